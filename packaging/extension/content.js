// certagent's content script: the bridge between a bank's web page and the
// extension's background script. It runs in every https page (and http on
// loopback, for testers), says to the page that the extension is there, and
// passes on the page's requests to the agent's API: only the API's own
// requests, never an origin (the background script takes the page's origin
// from the browser).
//
// The page and this script talk with window.postMessage:
//   page -> here: {source: "certagent-page", id, method, path, body}
//                 {source: "certagent-page", type: "hello"} (asks for "ready")
//   here -> page: {source: "certagent-extension", type: "ready", version}
//                 {source: "certagent-extension", id, status, body}
'use strict';

(() => {
  const api = globalThis.browser ?? globalThis.chrome;
  if (!api || !api.runtime) {
    return;
  }
  const VERSION = api.runtime.getManifest().version;
  const MAX_REQUEST = 8 * 1024;
  const ID = /^[A-Za-z0-9_-]{1,64}$/;

  // The API's requests, and nothing else (kept the same as background.js).
  function allowed(method, path) {
    if (typeof method !== 'string' || typeof path !== 'string') {
      return false;
    }
    if (method === 'GET') {
      return path === '/v1/status' || /^\/v1\/renewals\/[A-Za-z0-9-]{1,64}$/.test(path);
    }
    if (method === 'POST') {
      return path === '/v1/logon' || path === '/v1/renewals';
    }
    return false;
  }

  function plainObject(v) {
    return typeof v === 'object' && v !== null && !Array.isArray(v) &&
      Object.prototype.toString.call(v) === '[object Object]';
  }

  function utf8Length(s) {
    return new TextEncoder().encode(s).length;
  }

  function post(message) {
    window.postMessage({ source: 'certagent-extension', ...message }, location.origin);
  }

  function announce() {
    const root = document.documentElement;
    if (root) {
      root.dataset.certagentExtension = VERSION;
    }
    post({ type: 'ready', version: VERSION });
  }

  // The request as this script's own plain data (a page's objects may be
  // wrapped), or a refusal.
  function parse(data) {
    if (!allowed(data.method, data.path)) {
      return { refusal: 'only the certagent API\'s requests go through the extension' };
    }
    let body;
    if (data.body !== undefined && data.body !== null) {
      if (!plainObject(data.body)) {
        return { refusal: 'the body must be a JSON object' };
      }
      let text;
      try {
        text = JSON.stringify(data.body);
      } catch (_) {
        return { refusal: 'the body is not JSON' };
      }
      body = JSON.parse(text);
    }
    const request = { method: data.method, path: data.path };
    if (body !== undefined) {
      request.body = body;
    }
    if (utf8Length(JSON.stringify(request)) > MAX_REQUEST) {
      return { refusal: `the request is larger than ${MAX_REQUEST} bytes`, status: 413, code: 'too-large' };
    }
    return { request };
  }

  // runtime.sendMessage, as a promise in either browser.
  function send(request) {
    if (globalThis.browser) {
      return globalThis.browser.runtime.sendMessage(request);
    }
    return new Promise((resolve, reject) => {
      globalThis.chrome.runtime.sendMessage(request, (reply) => {
        const err = globalThis.chrome.runtime.lastError;
        if (err) {
          reject(new Error(err.message));
        } else {
          resolve(reply);
        }
      });
    });
  }

  window.addEventListener('message', (event) => {
    if (event.source !== window) {
      return;
    }
    const data = event.data;
    if (!plainObject(data) || data.source !== 'certagent-page') {
      return;
    }
    if (data.type === 'hello') {
      announce();
      return;
    }
    if (typeof data.id !== 'string' || !ID.test(data.id)) {
      return;
    }
    const id = data.id;
    const { request, refusal, status, code } = parse(data);
    if (!request) {
      post({ id, status: status || 400, body: { error: code || 'bad-request', message: refusal } });
      return;
    }
    let sent;
    try {
      sent = send(request);
    } catch (e) {
      sent = Promise.reject(e);
    }
    sent.then((reply) => {
      if (!plainObject(reply) || typeof reply.status !== 'number') {
        throw new Error('the extension gave no answer');
      }
      post({ id, status: reply.status, body: plainObject(reply.body) ? reply.body : null });
    }).catch((e) => {
      // The extension was reloaded, disabled or updated under this page.
      post({
        id,
        status: 503,
        body: {
          error: 'extension-unavailable',
          message: `the certagent extension cannot be reached (${e && e.message ? e.message : e})`,
        },
      });
    });
  });

  if (document.documentElement) {
    announce();
  } else {
    document.addEventListener('readystatechange', announce, { once: true });
  }
})();
