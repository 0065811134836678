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

  async function agentCall(method, path, body) {
    let resp;
    try {
      resp = await fetch(agent + path, {
        ...init(method, body),
        mode: 'cors',
        credentials: 'omit',
        referrerPolicy: 'no-referrer',
      });
    } catch (_) {
      // A network error and a CORS refusal look the same to a page.
      throw new Error(
        `the certagent agent does not answer at ${agent}: is it running, ` +
        `and does it allow ${location.origin}?`);
    }
    return answer(resp, 'the certagent agent');
  }

  function show(el, text) {
    el.classList.remove('error');
    el.textContent = text;
  }

  function showError(el, e) {
    el.classList.add('error');
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
        show(result, 'Confirm the logon and enter your PIN in the certagent window…');
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
      show(progress, 'Starting the renewal: confirm it in the certagent window…');
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
