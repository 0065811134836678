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
