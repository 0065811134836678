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
dialog-ok = OK
dialog-cancel = キャンセル
pin-prompt = PIN：
admin-pin-description = カード「{ $token }」の管理者PIN（新しい鍵の生成に必要な、カードの第二のPIN）を入力してください（{ $purpose }）。普段お使いのPINとは異なります。
admin-pin-prompt = 管理者PIN：
pin-terminal = トークン { $token } のPIN（{ $purpose }）：
admin-pin-terminal = カード { $token } の管理者PIN（鍵の生成に必要なカードの第二のPIN。{ $purpose }）：
otp-terminal = 利用者 { $user } のワンタイムパスワード（銀行から通知されたもの）：
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
   *[other] 有効期限から{ $days }日経過
}
never-expires = 有効期限なし

## タスクトレイ
tray-tooltip = { $holder }の電子証明書：{ $when }

## 電子証明書の状態と対処
state-not-yet-valid = 有効期間前
state-valid = 有効
state-renewal-due = 更新期間中
state-expired = 有効期限切れ
state-lapsed = 再発行が必要
advice-not-yet-valid = 電子証明書はまだ有効期間前です。パソコンの時計をご確認ください
advice-valid = 対応は不要です
advice-renewal-due = 今すぐ更新してください（certagent renew）
advice-expired = 銀行から通知されたIDとワンタイムパスワードで、新しい電子証明書を取得してください（certagent enroll --user ID）
advice-lapsed = 猶予期間を過ぎました。銀行に電子証明書の再発行をご依頼ください

## コマンドライン：トークンとPIN
cli-token = トークン { $label }（シリアル番号 { $serial }、{ $maker } { $model }）
cli-module = モジュール { $path }（{ $profile }、{ $maker } { $description }、PKCS#11 { $version }）
cli-profile = プロファイル { $name }
cli-no-profile = 該当するプロファイルなし
cli-no-slots = スロットがありません
cli-slot-empty = スロット { $slot }：トークンなし
cli-slot-uninitialised = スロット { $slot }：トークンが初期化されていません
cli-slot-token = スロット { $slot }：トークン { $label }
cli-serial-maker = シリアル番号 { $serial }、{ $maker } { $model }
cli-pin = PIN：{ $state }
cli-pin-pad = 、PINパッド（保護された認証経路）
cli-pin-change = 、変更が必要
pin-state-locked = ロック中
pin-state-final-try = 最後の試行
pin-state-count-low = 残り試行回数わずか
pin-state-uninitialised = 未設定
pin-state-ok = 正常
cli-enter-on-pad = カードリーダーのPINパッドでPINを入力してください。
cli-issuers-unknown = ご注意：銀行の発行CAがまだ分かりません（{ $reason }）。銀行の電子証明書として扱うものはありません

## コマンドライン：status と show
status-others = その他の証明書（銀行の電子証明書ではないため、certagent は扱いません）：
status-replaced = 新しい電子証明書に置き換えられた銀行の電子証明書（カードから削除できないため、有効期限まで残りますが、使用も更新もしません）：
status-other = { $subject }（ID { $id }）、発行者 { $issuer }
status-none = トークンに銀行の電子証明書がありません。certagent enroll --user ID で取得してください
field-id = ID
field-serial = シリアル番号
field-valid = 有効期間
field-state = 状態
field-next-notice = 次のお知らせ
state-when = { $state }（{ $when }）
status-state = { $state }：{ $advice }
valid-range = { $from } 〜 { $until }
no-expiry-date = （有効期限なし）
show-subject = サブジェクト
show-issuer = 発行者
show-serial = シリアル番号
show-valid-from = 有効期間の開始
show-valid-until = 有効期限
show-state = 状態
show-advice = 対処
show-renewal-opens = 更新の受付開始
show-grace-ends = 再取得の期限
show-next-notice = 次のお知らせ
show-key = 鍵
show-san = 別名
show-client-auth = ログオンへの利用
show-object = トークン上のオブジェクト
show-never = なし
show-no-end = 期限なし
show-never-renews = なし（有効期限のない電子証明書です）
show-client-auth-yes = 可能
show-client-auth-no = 不可（電子証明書の鍵用途が許していません）
show-object-value = ID { $id } ラベル { $label }

## コマンドライン：更新と取得
renew-doing = 更新します：{ $plan }。
enroll-doing = 取得します：{ $plan }。
renew-question = この電子証明書を今すぐ更新しますか？トークン上で新しい鍵を生成します。
enroll-question = 新しい電子証明書を今すぐ取得しますか？トークン上で新しい鍵を生成します。
renew-cancelled = 更新を取り消しました
enroll-cancelled = 取得を取り消しました
purpose-enroll = 新しい電子証明書の取得
resuming = 再開します：{ $plan }。
renew-done = 新しい電子証明書をトークンに書き込みました：
confirm-suffix = [y/N]

## 更新の内容（renew、enroll、エージェントのダイアログ）
plan-resume-renewal = { $of }ステップ「{ $step }」で中断された更新（{ $started } 開始）
plan-resume-enrolment = { $of }ステップ「{ $step }」で中断された利用者 { $user } の取得（{ $started } 開始）
plan-of = { $who }の
plan-renew = { $who }（ID { $id }、有効期限 { $date }）の電子証明書の更新
plan-enroll-replace = 利用者 { $user } の新しい電子証明書の取得（{ $who }、ID { $id } を置き換え）
plan-enroll-first = 利用者 { $user } の最初の電子証明書の取得
plan-renew-any = 電子証明書の更新

## 更新の進行
step-fetching-cacerts = 銀行のCA証明書を取得しています（/cacerts）
step-resuming = ステップ「{ $step }」で中断された処理を再開します
step-removed-candidate = 使われなかった候補の鍵 { $id } を削除しました
step-found-candidate = 中断された処理の候補の鍵が見つかりました
step-generating = トークン上で新しい { $key } 鍵を生成しています
step-signing-csr = トークン上で証明書署名要求に署名しています
step-checking = 銀行が発行した電子証明書を確認しています
step-installing = 新しい電子証明書をトークンに書き込んでいます
step-reading-back = 電子証明書を読み戻し、新しい鍵で試験署名しています
step-left-alone = ID { $id } はそのままにしました（この更新で置き換えた電子証明書はもうありません）
step-removed-old = 古い電子証明書と鍵を削除しました（ID { $id }）
step-generating-slot = カードの空いている鍵スロット { $id } に新しい { $key } 鍵を生成しています
step-generating-over-retired = カードの鍵スロット { $id } に新しい { $key } 鍵を生成しています（certagent が以前に使用を終えた古い鍵を置き換えます）
step-reading-card = 書き込んだ内容を確認するため、カードを読み直しています
step-candidate-stays = 使われなかった新しい鍵はカードの鍵スロット { $id } に残ります（このカードは鍵を削除できません）
step-removed-old-cert = 古い電子証明書を削除しました（スロット { $id }）
step-old-cert-stays = 古い電子証明書は有効期限までスロット { $id } に残ります。削除するとこのカードでは新しい電子証明書も消えてしまうためです
step-old-cert-error = カードはスロット { $id } の古い電子証明書を削除しませんでした。有効期限まで残ります（必要ならカード付属のツールで削除してください）
step-old-key-stays = 古い鍵はカードの鍵スロット { $id } に残りますが、今後は使われません（このカードは鍵を削除できません）
step-sending = 証明書署名要求を銀行に送信しています
step-sending-again = 証明書署名要求を銀行に再送信しています（{ $attempt } 回目）
step-bank-busy = 銀行が要求を処理中です。{ $seconds } 秒後にもう一度確認します

## エラー：何が起きたか（その下に英語の詳細）
error-config = 設定ファイルに誤りがあります。
error-driver = ドライバープロファイルに誤りがあります。
error-module-unknown = その名前のPKCS#11モジュールは登録されていません。
error-module-missing = トークンのPKCS#11モジュールがインストールされていません。
error-module-load = トークンのPKCS#11モジュールを読み込めませんでした。
error-no-token = トークンが挿入されていません。
error-token-ambiguous = 条件に合うトークンが複数あります。設定でどれか一つを指定してください。
error-pin-incorrect = トークンがPINを受け付けませんでした。自動での再試行はしていません。
error-pin-incorrect-final = トークンがPINを受け付けませんでした。自動での再試行はしていません。警告：PINをもう一度間違えるとトークンがロックされます。
error-pin-incorrect-locked = トークンがPINを受け付けず、ロックされました。銀行の管理者にロック解除をご依頼ください。
error-admin-pin-incorrect = カードが管理者PINを受け付けませんでした。自動での再試行はしていません。
error-busy = 別のプログラムがトークンを使用中です。しばらくしてからもう一度お試しください。
error-pin-locked = PINがロックされています。銀行の管理者にロック解除をご依頼ください。
error-pin-format = PINの長さまたは文字が正しくありません。
error-not-logged-in = トークンがもう一度PINを求めました。もう一度お試しください。
error-token-full = トークンに新しい鍵や電子証明書を保存する空きがありません。
error-token-write-protected = トークンが書き込み禁止になっています。
error-key-not-found = 電子証明書の鍵がトークン上にありません。
error-unsupported = トークンが必要な処理に対応していません。
error-token-malformed = トークンから読み取れないデータが返されました。
error-pkcs11 = トークンがエラーを報告しました。
error-certificate = 電子証明書を読み取れません。
error-csr = 証明書署名要求を作成できませんでした。
error-cancelled = 取り消しました。
error-prompt = PINまたはパスワードを尋ねることができませんでした。
error-renewal = 更新は完了しませんでした。トークン上のものは失われていません。同じコマンドをもう一度実行すると、中断したところから続けます。
error-browser-policy = ブラウザーのポリシーを変更できませんでした。
error-usage = 指定されたとおりには実行できません。
error-checks-failed = 一部の確認で問題が見つかりました。上の FAIL の行をご覧ください。
error-io = 出力を書き込めませんでした。
error-arguments = コマンドの指定に誤りがあります。使い方は certagent --help で確認できます。
error-details = 詳細：{ $details }

## certagent doctor（診断）
doctor-fix = 対処：{ $fix }
doctor-config-defaults = 既定の設定（{ $path } にファイルはありません）
doctor-xdg = XDG 設定ディレクトリ
doctor-module = { $path }（{ $profile }、{ $maker } { $description }）
doctor-module-fix = トークンのPKCS#11モジュールをインストールするか、[token] module にプロファイル名またはライブラリのパスを設定してください
doctor-token-fix = トークンを挿入し、[token] の label、serial または uri をご確認ください
doctor-insert-retry = トークンを挿入して、もう一度お試しください
doctor-pin-locked = 利用者PINがロックされています
doctor-pin-locked-fix = 銀行の管理者（トークンのセキュリティ管理者）にロック解除をご依頼ください
doctor-pin-counter = PINの状態：{ $state }
doctor-pin-counter-fix = PINは慎重に入力してください。誤りが続くとトークンがロックされます
doctor-pin-uninitialised = 利用者PINが設定されていません
doctor-pin-uninitialised-fix = トークンの管理ツールで利用者PINを設定してください
doctor-pin-pad = { $state }（PINパッド）
purpose-doctor = トークンの診断（certagent doctor）
doctor-logged-in = ログインしました
doctor-login-pin-fix = PINを確認して certagent doctor をもう一度実行してください。certagent がPINを自動で再試行することはありません
doctor-login-terminal-fix = PINを入力するには端末で certagent doctor を実行してください（無人での確認には CERTAGENT_PIN を設定）
doctor-login-again-fix = certagent doctor をもう一度実行し、PINを入力してください
doctor-login-locked-fix = 銀行の管理者（トークンのセキュリティ管理者）にPINのロック解除をご依頼ください
doctor-login-insert-fix = トークンを挿入して certagent doctor をもう一度実行してください
doctor-login-other-fix = メッセージが示す点を直してから、certagent doctor をもう一度実行してください
doctor-p11kit-root-fix = root として動くプログラムでは、p11-kit はご自身のモジュール一覧（{ $dir }、{ $count } 件）を読みません。certagent をご自身のユーザーで実行するか、/etc/pkcs11/modules/ にモジュールを登録してください（NAME.module というファイルに `module: /path/to/lib.so` と記述）
doctor-p11kit-fix = トークンを挿入してください。p11-kit のプロキシには p11-kit に登録されたモジュールだけが見えます（p11-kit list-modules）。トークンのモジュールを /etc/pkcs11/modules/ または ~/.config/pkcs11/modules/ に登録するか、[token] module にモジュールそのものを設定してください
doctor-no-bank = 設定に [bank] セクションがありません
doctor-no-bank-fix = certagent で更新するには [bank] に est_url と server_roots を設定してください
doctor-bank-ok = { $url } から応答あり。発行CA：{ $ca }
doctor-bank-fix = ネットワーク、[bank] est_url、および server_roots に銀行のTLSトラストアンカーが含まれているかをご確認ください
doctor-no-cert = トークンに銀行の電子証明書がありません
doctor-no-cert-fix = 銀行から通知されたワンタイムパスワードを使い、certagent enroll --user ID で取得してください
doctor-no-random = システムの乱数が使えません
doctor-no-random-fix = システムをご確認ください
doctor-cert-valid = { $who }：有効、{ $when }
doctor-cert-state = { $who }：{ $state }（{ $when }）
doctor-no-key = ID { $id } の秘密鍵がトークン上にありません
doctor-no-key-fix = 鍵がなければ電子証明書は使えません。certagent enroll で新しい電子証明書を取得してください
doctor-key-extractable = 秘密鍵が取り出し可能になっています
doctor-key-not-sensitive = 秘密鍵が保護されていません（sensitive でない）
doctor-key-exposed-fix = 電子証明書を更新してください。certagent が生成する新しい鍵はトークンの外に出ません
doctor-sig-mismatch = 鍵による { $scheme } 署名が電子証明書で検証できません
doctor-sig-mismatch-fix = 鍵と電子証明書が対応していません。certagent enroll で新しい電子証明書を取得してください
doctor-sign-failed = { $scheme } 署名に失敗しました：{ $error }
doctor-key-ok = 鍵で署名でき、電子証明書と一致します（{ $schemes }）
doctor-no-scheme = トークンにはこの { $key } 鍵で署名する方法がありません
doctor-no-scheme-fix = トークンのドライバープロファイルとメカニズムをご確認ください（certagent tokens）

## certagent demo（デモ）
demo-fresh = 新しい SoftHSM トークンと参照用の銀行
demo-token = トークン { $label }（{ $dir }、{ $module }）
demo-bank = 銀行：EST は { $est }、CA は { $ca }
demo-ana = Ana さんの電子証明書は20日後に有効期限を迎えます
demo-notice = デスクトップ通知（{ $days }日前のお知らせ、{ $due }）：「{ $summary }。{ $body }」
demo-renewal = 更新：トークン上で新しい鍵を生成し、証明書署名要求を作り、相互TLSの EST simplereenroll で送信します
demo-bor = Bor さんの電子証明書は5日前に有効期限が切れました。銀行のワンタイムパスワードで新しい電子証明書を取得します
demo-bor-otp = （銀行は Bor さんに ID「bor」とワンタイムパスワードを通知しました）
demo-now = 現在のトークン
demo-done = 完了しました。{ $dir } は削除されました。

## デスクトップのエージェント
tray-no-token = トークンなし
tray-no-token-tip = トークンがありません。銀行のトークンを挿入してください
tray-token-problem = トークンの問題：{ $error }
tray-pending = 中断された更新（ステップ「{ $step }」）が待っています。「電子証明書を更新…」を選ぶと完了します
tray-renewing = 更新中：{ $step }
notice-pending-summary = 中断された更新が待っています
notice-pending-body = 電子証明書の更新が中断されました。「今すぐ更新」を選ぶと完了します。新しい電子証明書がトークンに書き込まれるまで、古い電子証明書はそのまま残ります。
notice-renewed-summary = 電子証明書を更新しました
notice-renewed-body = 新しい電子証明書の有効期限は { $until } です。
notice-failed-summary = 更新に失敗しました
notice-not-started-summary = 更新を開始できませんでした
show-none = トークンに銀行の電子証明書がありません。
show-dialog = { $holder }
    { $subject }
    発行者 { $issuer }
    有効期間 { $from } 〜 { $until }
    { $state }（{ $when }）
    SHA-256 { $fingerprint }
show-more = ほか { $count } 件。certagent status ですべて確認できます。

## certagent browser-policy（ブラウザーのポリシー）
policy-for = { $origins } のローカル ネットワーク アクセスのポリシー：
policy-created = 作成
policy-updated = 更新
policy-unchanged = 変更なし
policy-removed = 削除
policy-recorded = 記録先：{ $record }（certagent browser-policy --remove で使います）
policy-applies = Chromium、Chrome、Edge は数分以内に適用します（chrome://policy の「ポリシーを再読み込み」ですぐに適用）。Firefox は次回の起動時に適用します。
policy-nothing = 削除するものはありません：certagent のブラウザー ポリシーはインストールされていません
policy-kept = 残しました：{ $dir }（インストール時に作成しましたが、現在は他のファイルがあります）

## certagent --help（ヘルプ）
help-about = PKCS#11 トークン上の銀行の電子証明書を、期限切れにならないよう管理します
help-usage = 使い方:
help-commands = コマンド
help-options = オプション
help-arg-config = 設定ファイル（省略時は $CERTAGENT_CONFIG、それもなければ XDG 設定ディレクトリの certagent/config.toml）
help-arg-json = データを JSON で出力します
help-arg-verbose = ログを詳しく出力します（重ねるほど詳しく）
help-arg-help = ヘルプを表示します
help-arg-version = バージョンを表示します
help-arg-yes = 確認を求めません
help-tokens = 設定されたモジュールのスロットとトークン、PINの状態
help-status = トークン上の銀行の電子証明書とその状態
help-show = 電子証明書一件の詳細
help-show-id = 電子証明書の CKA_ID（16進数）
help-doctor = モジュール、トークン、PIN、ログイン、各電子証明書の鍵で署名でき一致するかを診断します
help-renew = 更新期間中の電子証明書を、相互TLSの EST で更新します
help-renew-id = 更新する電子証明書の CKA_ID（16進数）
help-enroll = 銀行から通知されたIDとワンタイムパスワードで電子証明書を取得します（初回、または有効期限切れの後）
help-enroll-user = 銀行から通知された利用者ID
help-enroll-id = 置き換える有効期限切れの電子証明書の CKA_ID（16進数）
help-run = エージェント：タスクトレイのアイコン、デスクトップ通知、銀行のページのためのローカルAPI
help-run-no_tray = タスクトレイのアイコンなしで、APIと通知だけを提供します
help-run-unattended = 無人テスト専用：PINとワンタイムパスワードを CERTAGENT_PIN と CERTAGENT_OTP から取ります
help-demo = 新しい SoftHSM トークンと参照用の銀行（certagent の隣の certagent-bank）で一連の流れを実行します
help-browser-policy = `[bank] origins` からエージェントへの接続を許可するブラウザーの管理ポリシーを表示、インストール（root）、削除します
help-browser-policy-install = Linux のポリシーファイルを /etc の下に書き込みます（Chromium、Chrome、Edge、Firefox ESR）。root が必要です
help-browser-policy-remove = --install が書き込んだファイルと作成したディレクトリを削除します。root が必要です
help-help = このメッセージ、または指定したコマンドのヘルプを表示します
policy-print-head = 銀行のページがこのパソコンの certagent エージェントに、ローカル ネットワーク アクセスの
    確認なしで接続できるようにする、ブラウザーの管理ポリシーです。対象のオリジン：
policy-print-linux = Linux：`sudo certagent --config FILE browser-policy --install` が次のファイルを
    書き込みます（モード 0644、未インストールのブラウザーの分も）。
    `sudo certagent browser-policy --remove` で削除できます。
policy-print-no-firefox = Firefox：ファイルは不要です。どのオリジンもこのパソコン上（ループバック）にあり、
    このパソコン上のページは確認なしでエージェントを呼び出せます。
policy-print-windows = Windows：certagent.reg として保存し、管理者として取り込んでください
    （`reg import certagent.reg`）。グループ ポリシーで同じ値を設定することもできます。
    `certagent browser-policy --json | jq -r .windows_reg` でこのファイルだけを出力します。
policy-print-macos = macOS：この構成プロファイル（certagent.mobileconfig）を MDM で配布してください。
    macOS の Chrome と Edge は管理された環境設定からのみポリシーを読み込みます。
    `certagent browser-policy --json | jq -r .macos_mobileconfig` でこれだけを出力します。
policy-print-firefox = そのほかの Firefox（Mozilla 配布版、Windows、macOS）：policies.json の
    エンタープライズ ポリシー LocalNetworkAccess（Linux では /etc/firefox/policies/policies.json。
    すべてのポリシーで一つのファイルなので、これを統合してください）。Firefox は ESR 153 も、
    公開ページからこのパソコンへの接続前に確認します。このポリシーは network.lna.skip-domains を
    設定し、これはオリジンではなくホスト名を取ります。ループバックのホストは含めません：この設定は
    接続先のアドレスにも一致するため、すべてのページで確認がなくなってしまいます。
help-native-messaging = certagent ブラウザー拡張機能のためのネイティブメッセージングホストのマニフェストを表示、インストール、削除します（ユーザーごと。root ではシステム全体）
help-native-messaging-install = Chromium、Chrome、Edge、Firefox のマニフェストを書き込みます
help-native-messaging-remove = certagent のマニフェストを削除します
help-native-host = certagent 拡張機能のためにブラウザーが起動するネイティブメッセージングホスト（標準入力からブラウザーのメッセージを読みます）
native-agent-not-running = このコンピューターで certagent が動いていません。certagent を起動して（certagent run、またはログオンし直して）から、もう一度お試しください
