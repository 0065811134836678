// The reference bank's pages: logon with the token, and the important
// notices with renewal. Talks to the bank (same origin, with its cookies)
// and to the certagent agent on this computer (CORS, without cookies).
// No external code; the agent's URL comes from <meta name="certagent-agent">.
'use strict';

(() => {
  const agent = document.querySelector('meta[name="certagent-agent"]').content;
  const $ = (id) => document.getElementById(id);

  // The JSON of an answer, or an Error with the server's own message.
  async function answer(resp, who) {
    let data = null;
    try {
      data = await resp.json();
    } catch (_) {
      data = null;
    }
    if (!resp.ok) {
      const message = data && typeof data.message === 'string' && data.message
        ? data.message
        : `${who} answered HTTP ${resp.status}`;
      throw new Error(message);
    }
    if (data === null) {
      throw new Error(`${who} sent an answer that is not JSON`);
    }
    return data;
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
      throw new Error(`the bank cannot be reached (${e.message})`);
    }
    return answer(resp, 'the bank');
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
    return new AgentError(
      'your browser does not let this site reach certagent on this computer. ' +
      'Click the icon left of the address bar, open the site settings, set ' +
      '"Local network access" to Allow and try again. Your company\'s IT can ' +
      'allow this site for everyone with "certagent browser-policy --install".',
      'local-network-denied');
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
      const asked = state === 'prompt'
        ? ' If your browser asks whether this site may reach devices on this ' +
          'computer, choose Allow.'
        : '';
      return new AgentError(
        'certagent does not answer on this computer. Start it (in your ' +
        `applications menu: certagent) and try again.${asked}`,
        'agent-not-running');
    }
    return new AgentError(
      `certagent on this computer does not accept this site (${location.origin}): ` +
      'it is set up for another address of the bank. Ask your IT to add this ' +
      'address to certagent\'s [bank] origins.',
      'origin-not-allowed');
  }

  // While the browser has not yet been told whether this site may reach
  // this computer, it asks the user first (and holds the call meanwhile).
  async function askingHint() {
    return (await loopbackPermission()) === 'prompt'
      ? 'If your browser asks whether this site may reach apps on this computer, ' +
        'choose Allow. '
      : '';
  }

  async function agentCall(method, path, body) {
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
    return answer(resp, 'the certagent agent');
  }

  function show(el, text) {
    el.classList.remove('error');
    delete el.dataset.reason;
    el.textContent = text;
  }

  function showError(el, e) {
    el.classList.add('error');
    el.dataset.reason = e.reason || 'error';
    el.textContent = `Error: ${e.message}`;
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
        show(result, 'Asking the bank for a challenge…');
        const { challenge } = await bank('POST', '/logon/challenge');
        show(result, `${await askingHint()}Confirm the logon and enter your PIN in the certagent window…`);
        const token = await agentCall('POST', '/v1/logon', { challenge });
        show(result, 'Checking your signature…');
        const who = await bank('POST', '/logon/verify', { ...token, challenge });
        show(result, `Logged on as ${who.subject}`);
        if (who.renewal_notice) {
          renewal.replaceChildren(
            `Your certificate expires in ${who.days_left} days. `,
            Object.assign(document.createElement('a'), {
              href: '/notices',
              textContent: 'Renew it now',
            }),
            ' to keep logging on.');
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
        notice.textContent = 'No notices';
        renew.hidden = true;
        return;
      }
      notice.replaceChildren(...due.map((c) => {
        const p = document.createElement('p');
        p.className = 'notice';
        p.textContent = `Your certificate ${c.subject} expires in ${c.days_left} days ` +
          `(${c.not_after}). Renew it now to keep logging on.`;
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
          show(progress, job.not_after
            ? `Renewed: new certificate valid until ${job.not_after}`
            : 'Renewed: the new certificate is on your token');
          renew.disabled = false;
          load();
        } else if (job.state === 'failed') {
          showError(progress, new Error(job.message || 'the renewal failed'));
          renew.disabled = false;
        } else {
          show(progress, job.step || 'Renewing…');
          poll(id);
        }
      }, 500);
    }

    renew.addEventListener('click', async () => {
      renew.disabled = true;
      show(progress, `${await askingHint()}Starting the renewal: confirm it in the certagent window…`);
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
