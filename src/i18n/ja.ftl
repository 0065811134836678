# certagent の日本語テキスト (Fluent)。en.ftl と同じメッセージと変数を持つ。

## タスクトレイのメニュー
tray-renew = 電子証明書を更新…
tray-show = 電子証明書を表示
tray-open = 銀行のサイトを開く
tray-quit = 終了

## デスクトップ通知
notice-due-summary = 電子証明書の有効期限まであと{ $days }日です
notice-due-body = { $who }の電子証明書は{ $date }に有効期限を迎えます。引き続きログオンするには、今すぐ更新してください。
notice-due-action = 今すぐ更新
notice-expired-summary = 電子証明書の有効期限が切れました
notice-expired-body = { $who }の電子証明書は有効期限が切れました。銀行から通知されたIDとワンタイムパスワードで、新しい電子証明書を取得してください（certagent enroll）。
notice-lapsed-summary = 電子証明書を更新できなくなりました
notice-lapsed-body = { $who }の電子証明書は猶予期間を過ぎました。銀行に再発行をご依頼ください。

## エージェントのダイアログ (pinentry)
dialog-allow = 許可する
dialog-deny = 拒否する
pin-description = トークン「{ $token }」のPINを入力してください（{ $purpose }）。
pin-final-try = 警告：これが最後の試行です。PINをもう一度間違えるとトークンがロックされます
pin-count-low = ご注意：以前に誤ったPINが入力されました。残りの試行回数が少ない可能性があります
otp-description = 銀行から利用者 { $user } あてに通知されたワンタイムパスワードを入力してください。
otp-prompt = ワンタイムパスワード:
purpose-logon = { $origin } へのログオン
purpose-renew = 電子証明書の更新
consent-logon = ブラウザーで開いている { $origin } のページが、電子証明書によるログオンを求めています

    { $holder }
    （有効期限：{ $until }）

    いまこのアドレスで銀行にログオンしている場合にのみ許可してください。
consent-renew-page = ブラウザーで開いている { $origin } のページが、電子証明書の更新を求めています
consent-renew-desktop = 電子証明書を更新します
consent-renew-start = { $who }：

    { $plan }。

    トークン上で新しい鍵を生成します。許可しますか？
consent-renew-resume = { $who }。

    中断された更新が完了を待っています：{ $plan }。

    今すぐ完了しますか？

## 有効期限の言い方
expires-in = 有効期限まであと{ $days }日
expired-ago = { $days ->
    [0] 本日、有効期限が切れました
   *[other] 有効期限切れ（{ $days }日経過）
}
never-expires = 有効期限なし

## タスクトレイ
tray-tooltip = { $holder }の電子証明書：{ $when }
