// The reference bank's pages: logon with the token, and the important
// notices with renewal. Talks to the bank (same origin, with its cookies)
// and to the certagent agent on this computer: through the certagent
// browser extension when it is there (window.postMessage to its content
// script; the browser tells the agent this page's origin), else through the
// agent's local API (CORS, without cookies).
// No external code; the agent's URL comes from <meta name="certagent-agent">.
'use strict';

(() => {
  const agent = document.querySelector('meta[name="certagent-agent"]').content;
  const $ = (id) => document.getElementById(id);

  // The page's own words, in the page's language (the bank serves the
  // page in English or Japanese by Accept-Language or ?lang=). Messages
  // from the bank's or the agent's servers are shown as they come.
  const lang = document.documentElement.lang === 'ja' ? 'ja' : 'en';
  const when = (iso) => {
    const d = new Date(iso);
    return Number.isNaN(d.getTime())
      ? iso
      : d.toLocaleDateString(lang === 'ja' ? 'ja-JP' : 'en-GB',
        { year: 'numeric', month: 'long', day: 'numeric' });
  };
  const WORDS = {
    en: {
      error: (m) => `Error: ${m}`,
      bankUnreachable: (m) => `the bank cannot be reached (${m})`,
      answeredHttp: (who, s) => `${who} answered HTTP ${s}`,
      notJson: (who) => `${who} sent an answer that is not JSON`,
      theBank: 'the bank',
      theAgent: 'the certagent agent',
      lnaDenied: 'your browser does not let this site reach certagent on this computer. ' +
        'Click the icon left of the address bar, open the site settings, set ' +
        '"Local network access" to Allow and try again. Your company\'s IT can ' +
        'allow this site for everyone with "certagent browser-policy --install".',
      notRunning: (asked) => 'certagent does not answer on this computer. Start it (in your ' +
        `applications menu: certagent) and try again.${asked ? ' If your browser asks ' +
        'whether this site may reach devices on this computer, choose Allow.' : ''}`,
      notAllowed: (o) => `certagent on this computer does not accept this site (${o}): ` +
        'it is set up for another address of the bank. Ask your IT to add this ' +
        'address to certagent\'s [bank] origins.',
      askingHint: 'If your browser asks whether this site may reach apps on this computer, ' +
        'choose Allow. ',
      askingChallenge: 'Asking the bank for a challenge…',
      confirmLogon: 'Confirm the logon and enter your PIN in the certagent window…',
      checking: 'Checking your signature…',
      loggedOn: (who) => `Logged on as ${who}`,
      renewSoon: (days) => `Your certificate expires in ${days} days. `,
      renewItNow: 'Renew it now',
      toKeep: ' to keep logging on.',
      noNotices: 'No notices',
      dueNotice: (c) => `Your certificate for ${c.holder || c.subject} expires in ` +
        `${c.days_left} days, on ${when(c.not_after)}. Renew it now to keep logging on.`,
      renewedUntil: (d) => `Renewed: new certificate valid until ${when(d)}`,
      renewed: 'Renewed: the new certificate is on your token',
      renewalFailed: 'the renewal failed',
      renewing: 'Renewing…',
      startingRenewal: 'Starting the renewal: confirm it in the certagent window…',
      noAnswer: 'certagent did not answer in time. Try again.',
      viaExtension: 'Channel: via the certagent browser extension',
      viaApi: 'Channel: via certagent on this computer (local API)',
      // The servers' own messages are English already.
      errors: {},
    },
    ja: {
      error: (m) => `エラー：${m}`,
      bankUnreachable: (m) => `銀行に接続できません（${m}）`,
      answeredHttp: (who, s) => `${who}が HTTP ${s} を返しました`,
      notJson: (who) => `${who}の応答が JSON ではありません`,
      theBank: '銀行',
      theAgent: 'certagent エージェント',
      lnaDenied: 'お使いのブラウザーが、このサイトからこのパソコンの certagent への接続を' +
        '許可していません。アドレスバー左のアイコンからサイトの設定を開き、' +
        '「ローカル ネットワーク アクセス」を「許可」にして、もう一度お試しください。' +
        '社内のシステム管理者は "certagent browser-policy --install" で' +
        '全員に許可できます。',
      notRunning: (asked) => 'このパソコンの certagent が応答しません。アプリケーション' +
        'メニューから certagent を起動して、もう一度お試しください。' +
        (asked ? 'ブラウザーがこのサイトからのアクセスを許可するか尋ねたら、' +
        '「許可」を選んでください。' : ''),
      notAllowed: (o) => `このパソコンの certagent は、このサイト（${o}）からの接続を` +
        '受け付けない設定です。システム管理者に、このアドレスを certagent の ' +
        '[bank] origins に追加するよう依頼してください。',
      askingHint: 'このサイトからこのパソコンのアプリへのアクセスを許可するか' +
        'ブラウザーが尋ねたら、「許可」を選んでください。',
      askingChallenge: '銀行にチャレンジを要求しています…',
      confirmLogon: 'certagent の画面でログオンを確認し、PINを入力してください…',
      checking: '署名を確認しています…',
      loggedOn: (who) => `${who} としてログオンしました`,
      renewSoon: (days) => `電子証明書の有効期限まであと${days}日です。`,
      renewItNow: '今すぐ更新',
      toKeep: 'して、引き続きログオンできるようにしてください。',
      noNotices: 'お知らせはありません',
      dueNotice: (c) => `${c.holder || c.subject}の電子証明書は${when(c.not_after)}に` +
        `有効期限を迎えます（あと${c.days_left}日）。引き続きログオンするには、` +
        '今すぐ更新してください。',
      renewedUntil: (d) => `更新しました：新しい電子証明書の有効期限は${when(d)}です`,
      renewed: '更新しました：新しい電子証明書がトークンに保存されました',
      renewalFailed: '更新に失敗しました',
      renewing: '更新しています…',
      startingRenewal: '更新を開始します：certagent の画面で確認してください…',
      noAnswer: 'certagent から時間内に応答がありませんでした。もう一度お試しください。',
      viaExtension: '経路：certagent ブラウザー拡張機能経由',
      viaApi: '経路：このコンピューターの certagent (ローカル API) 経由',
      // What the bank's and the agent's error codes mean; the server's
      // English message follows in brackets.
      errors: {
        declined: 'certagent の画面でログオンが拒否されました',
        cancelled: 'PINの入力が取り消されました',
        'pin-incorrect': 'トークンがPINを受け付けませんでした（自動での再試行はしていません）',
        'pin-locked': 'PINがロックされています。銀行の管理者にロック解除をご依頼ください',
        'no-token': 'トークンが挿入されていません',
        'no-certificate': 'トークンに銀行の電子証明書がありません',
        busy: '処理中です。しばらくしてからもう一度お試しください',
        'not-due': 'まだ更新期間ではありません',
        refused: 'この電子証明書は certagent では更新できません',
        'cool-down': '少し時間をおいてからもう一度お試しください',
        certificate: 'この電子証明書ではログオンできません',
        token: 'トークンの問題です',
        prompt: 'certagent がPINを尋ねることができませんでした',
        renewal: '更新を開始できませんでした',
        'host-failed': 'certagent ブラウザー拡張機能がこのパソコンの certagent と通信できませんでした',
        challenge_expired: 'チャレンジの有効期限が切れました。もう一度ログオンしてください',
        challenge_used: 'このチャレンジは使用済みです。もう一度ログオンしてください',
        challenge_replaced: '新しいログオンが始まりました。もう一度ログオンしてください',
        unknown_challenge: '銀行がこのチャレンジを確認できません。もう一度ログオンしてください',
        too_many_challenges: 'ログオンの要求が多すぎます。しばらくしてからお試しください',
        bad_signature: '署名を確認できませんでした',
        untrusted_certificate: '銀行が発行した電子証明書ではありません',
        unknown_certificate: '銀行にこの電子証明書の発行記録がありません',
        superseded_certificate: 'この電子証明書は更新済みです。新しい電子証明書でログオンしてください',
        certificate_not_yet_valid: '電子証明書はまだ有効期間前です。パソコンの時計をご確認ください',
        certificate_expired: '電子証明書の有効期限が切れています。ワンタイムパスワードで新しい電子証明書を取得してください',
        certificate_lapsed: '電子証明書の猶予期間を過ぎました。銀行に再発行をご依頼ください',
        session_expired: 'セッションの有効期限が切れました。もう一度ログオンしてください',
        no_session: 'ログオンしていません',
        wrong_origin: 'このページは銀行のページではありません',
        cross_origin: 'このページは銀行のページではありません',
      },
    },
  };
  const T = WORDS[lang];

  // The JSON of an answer (`data`, null when there is none), or an Error
  // with the server's own message. The same for an HTTP response and for
  // the extension's {status, body}.
  function settle(status, data, who) {
    if (status < 200 || status > 299) {
      const message = data && typeof data.message === 'string' && data.message
        ? data.message
        : T.answeredHttp(who, status);
      const code = data && typeof data.error === 'string' ? data.error : '';
      const words = Object.prototype.hasOwnProperty.call(T.errors, code) ? T.errors[code] : '';
      throw new Error(words ? `${words}（${message}）` : message);
    }
    if (data === null) {
      throw new Error(T.notJson(who));
    }
    return data;
  }

  async function answer(resp, who) {
    let data = null;
    try {
      data = await resp.json();
    } catch (_) {
      data = null;
    }
    return settle(resp.status, data, who);
  }

  function init(method, body) {
    const opts = { method, cache: 'no-store', headers: {} };
    if (body !== undefined) {
      opts.headers['Content-Type'] = 'application/json';
      opts.body = JSON.stringify(body);
    }
    return opts;
  }

  async function bank(method, path, body) {
    let resp;
    try {
      resp = await fetch(path, { ...init(method, body), credentials: 'same-origin' });
    } catch (e) {
      throw new Error(T.bankUnreachable(e.message));
    }
    return answer(resp, T.theBank);
  }

  // A failure to reach the agent that the customer can act on; `reason`
  // tells the cases apart for the page (and for tests).
  class AgentError extends Error {
    constructor(message, reason) {
      super(message);
      this.reason = reason;
    }
  }

  // Local Network Access (Chromium 142 and later): a page on a public
  // address may call the agent on this computer only with the user's
  // permission, or where the company's IT allows the bank's site by
  // policy. Chromium 146+ names the permission `loopback-network`, earlier
  // versions `local-network-access`; browsers without it have no such gate.
  async function loopbackPermission() {
    if (!navigator.permissions || !navigator.permissions.query) {
      return 'unsupported';
    }
    for (const name of ['loopback-network', 'local-network-access']) {
      try {
        return (await navigator.permissions.query({ name })).state;
      } catch (_) {
        // Not a permission this browser knows; try the older name.
      }
    }
    return 'unsupported';
  }

  function localNetworkError() {
    return new AgentError(T.lnaDenied, 'local-network-denied');
  }

  // Why the agent could not be reached: the browser's gate, an agent that
  // is not running, or an agent that does not accept this site. A network
  // error and a CORS refusal look the same to a page, so an opaque
  // (no-cors) request tells them apart: it reaches a running agent whatever
  // the agent allows, and reads nothing (without an Origin, the agent
  // refuses it before anything else).
  async function whyUnreachable() {
    if ((await loopbackPermission()) === 'denied') {
      return localNetworkError();
    }
    try {
      await fetch(agent + '/v1/status', {
        method: 'GET',
        mode: 'no-cors',
        credentials: 'omit',
        cache: 'no-store',
        referrerPolicy: 'no-referrer',
        targetAddressSpace: 'loopback',
      });
    } catch (_) {
      const state = await loopbackPermission();
      if (state === 'denied') {
        return localNetworkError();
      }
      return new AgentError(T.notRunning(state === 'prompt'), 'agent-not-running');
    }
    return new AgentError(T.notAllowed(location.origin), 'origin-not-allowed');
  }

  // ------------------------------------------- the extension's channel
  //
  // The certagent extension's content script marks the page
  // (<html data-certagent-extension="version">) and says
  // {source: "certagent-extension", type: "ready"}; a request goes to it as
  // {source: "certagent-page", id, method, path, body} and comes back as
  // {source: "certagent-extension", id, status, body}. The page never
  // names its origin: the browser tells the extension.

  // How long a page without the extension waits for it after loading.
  const EXTENSION_WAIT_MS = 300;
  // A logon waits for the user's consent and PIN in certagent's window.
  const EXTENSION_TIMEOUT_MS = 180 * 1000;
  const marked = () => Boolean(document.documentElement.dataset.certagentExtension);
  let extensionReady = marked();
  // The extension is there but cannot reach certagent (its native host is
  // not installed, or the extension went away): the API from now on.
  let extensionGone = false;
  let readyWaiters = [];
  const pending = new Map();

  window.addEventListener('message', (event) => {
    if (event.source !== window || event.origin !== location.origin) {
      return;
    }
    const data = event.data;
    if (!data || typeof data !== 'object' || data.source !== 'certagent-extension') {
      return;
    }
    if (data.type === 'ready') {
      extensionReady = true;
      const waiters = readyWaiters;
      readyWaiters = [];
      waiters.forEach((w) => w());
      return;
    }
    const settleCall = typeof data.id === 'string' ? pending.get(data.id) : undefined;
    if (settleCall) {
      pending.delete(data.id);
      settleCall(data);
    }
  });
  // In case the content script announced itself before this script listened.
  window.postMessage({ source: 'certagent-page', type: 'hello' }, location.origin);

  let probe = null;
  function extensionPresent() {
    if (extensionGone) {
      return Promise.resolve(false);
    }
    if (extensionReady || marked()) {
      return Promise.resolve(true);
    }
    if (probe === null) {
      probe = new Promise((resolve) => {
        readyWaiters.push(() => resolve(true));
        const wait = () => setTimeout(() => resolve(extensionReady || marked()), EXTENSION_WAIT_MS);
        if (document.readyState === 'complete') {
          wait();
        } else {
          window.addEventListener('load', wait, { once: true });
        }
      });
    }
    return probe;
  }

  function randomId() {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
  }

  // One request through the extension: its {status, body}.
  function extensionCall(method, path, body) {
    return new Promise((resolve, reject) => {
      const id = randomId();
      const timer = setTimeout(() => {
        pending.delete(id);
        reject(new AgentError(T.noAnswer, 'agent-timeout'));
      }, EXTENSION_TIMEOUT_MS);
      pending.set(id, (data) => {
        clearTimeout(timer);
        resolve({
          status: typeof data.status === 'number' ? data.status : 0,
          body: data.body && typeof data.body === 'object' ? data.body : null,
        });
      });
      const message = { source: 'certagent-page', id, method, path };
      if (body !== undefined) {
        message.body = body;
      }
      window.postMessage(message, location.origin);
    });
  }

  // Which way the last call went: on <html data-channel> and in words.
  function usedChannel(channel) {
    document.documentElement.dataset.channel = channel;
    const line = $('channel');
    if (line) {
      line.textContent = channel === 'extension' ? T.viaExtension : T.viaApi;
      line.hidden = false;
    }
  }

  // While the browser has not yet been told whether this site may reach
  // this computer, it asks the user first (and holds the call meanwhile).
  // Through the extension there is no such question.
  async function askingHint() {
    if (await extensionPresent()) {
      return '';
    }
    return (await loopbackPermission()) === 'prompt' ? T.askingHint : '';
  }

  async function agentCall(method, path, body) {
    if (await extensionPresent()) {
      let reply;
      try {
        reply = await extensionCall(method, path, body);
      } catch (e) {
        usedChannel('extension');
        throw e;
      }
      const code = reply.body && typeof reply.body.error === 'string' ? reply.body.error : '';
      if (reply.status === 503 && (code === 'host-not-installed' || code === 'extension-unavailable')) {
        // The extension cannot reach certagent: the local API can.
        extensionGone = true;
      } else {
        usedChannel('extension');
        if (reply.status === 503 && code === 'agent-not-running') {
          throw new AgentError(T.notRunning(false), 'agent-not-running');
        }
        if (reply.status === 403 && code === 'origin') {
          throw new AgentError(T.notAllowed(location.origin), 'origin-not-allowed');
        }
        return settle(reply.status, reply.body, T.theAgent);
      }
    }
    try {
      return await apiCall(method, path, body);
    } finally {
      usedChannel('api');
    }
  }

  // ------------------------------------------------ the local API's channel

  async function apiCall(method, path, body) {
    // Already refused by the browser: do not ask again, say what to do.
    if ((await loopbackPermission()) === 'denied') {
      throw localNetworkError();
    }
    let resp;
    try {
      resp = await fetch(agent + path, {
        ...init(method, body),
        mode: 'cors',
        credentials: 'omit',
        referrerPolicy: 'no-referrer',
        // The agent listens on loopback: saying so lets Chromium ask for the
        // right permission and exempts the request from mixed-content rules.
        targetAddressSpace: 'loopback',
      });
    } catch (_) {
      throw await whyUnreachable();
    }
    return answer(resp, T.theAgent);
  }

  function show(el, text) {
    el.classList.remove('error');
    delete el.dataset.reason;
    el.textContent = text;
  }

  function showError(el, e) {
    el.classList.add('error');
    el.dataset.reason = e.reason || 'error';
    el.textContent = T.error(e.message);
  }

  // ------------------------------------------------------------- logon

  function logonPage() {
    const button = $('logon');
    const result = $('result');
    const renewal = $('renewal');
    button.addEventListener('click', async () => {
      button.disabled = true;
      renewal.hidden = true;
      try {
        show(result, T.askingChallenge);
        const { challenge } = await bank('POST', '/logon/challenge');
        show(result, `${await askingHint()}${T.confirmLogon}`);
        const token = await agentCall('POST', '/v1/logon', { challenge });
        show(result, T.checking);
        const who = await bank('POST', '/logon/verify', { ...token, challenge });
        show(result, T.loggedOn(who.holder || who.subject));
        if (who.renewal_notice) {
          renewal.replaceChildren(
            T.renewSoon(who.days_left),
            Object.assign(document.createElement('a'), {
              href: `/notices?lang=${lang}`,
              textContent: T.renewItNow,
            }),
            T.toKeep);
          renewal.hidden = false;
        }
      } catch (e) {
        showError(result, e);
      } finally {
        button.disabled = false;
      }
    });
  }

  // ----------------------------------------------------------- notices

  function noticesPage() {
    const notice = $('notice');
    const renew = $('renew');
    const progress = $('progress');

    async function load() {
      let status;
      try {
        status = await agentCall('GET', '/v1/status');
      } catch (e) {
        renew.hidden = true;
        showError(notice, e);
        return;
      }
      const due = (status.certificates || []).filter((c) => c.state === 'renewal-due');
      notice.classList.remove('error');
      if (due.length === 0) {
        notice.textContent = T.noNotices;
        renew.hidden = true;
        return;
      }
      notice.replaceChildren(...due.map((c) => {
        const p = document.createElement('p');
        p.className = 'notice';
        p.textContent = T.dueNotice(c);
        return p;
      }));
      renew.hidden = false;
    }

    function poll(id) {
      setTimeout(async () => {
        let job;
        try {
          job = await agentCall('GET', `/v1/renewals/${encodeURIComponent(id)}`);
        } catch (e) {
          showError(progress, e);
          renew.disabled = false;
          return;
        }
        if (job.state === 'done') {
          show(progress, job.not_after ? T.renewedUntil(job.not_after) : T.renewed);
          renew.disabled = false;
          load();
        } else if (job.state === 'failed') {
          showError(progress, new Error(job.message || T.renewalFailed));
          renew.disabled = false;
        } else {
          show(progress, job.step || T.renewing);
          poll(id);
        }
      }, 500);
    }

    renew.addEventListener('click', async () => {
      renew.disabled = true;
      show(progress, `${await askingHint()}${T.startingRenewal}`);
      try {
        const job = await agentCall('POST', '/v1/renewals', {});
        poll(job.id);
      } catch (e) {
        showError(progress, e);
        renew.disabled = false;
      }
    });
    load();
  }

  if (document.body.dataset.page === 'logon') {
    logonPage();
  } else if (document.body.dataset.page === 'notices') {
    noticesPage();
  }
})();
