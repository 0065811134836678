// certagent's background script (Chromium's service worker, Firefox's event
// page): takes each request the content script passes on, adds the sending
// page's origin as the BROWSER reports it, and hands it to the native
// messaging host `certagent` (`certagent native-host`), which asks the
// running agent. The agent checks the origin against its `[bank] origins`
// as the local API checks Origin.
//
//   content script -> here: {method, path, body?}
//   here -> host:           {origin, method, path, body}   (body: object or null)
//   host -> here:           {status, body}                 (body: JSON object)
//   here -> content script: {status, body}
//
// When the host cannot be started (not installed, not allowed for this
// extension), the answer is {status: 503, body: {error: "host-not-installed"}}
// and the page falls back to the local API. The host itself answers
// {status: 503, body: {error: "agent-not-running"}} when the agent is not
// running.
'use strict';

const api = globalThis.browser ?? globalThis.chrome;
const HOST = 'certagent';
const MAX_REQUEST = 8 * 1024;
const LOOPBACK = new Set(['127.0.0.1', 'localhost', '[::1]']);

// The API's requests, and nothing else (kept the same as content.js).
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

function failure(status, error, message) {
  return { status, body: { error, message } };
}

// The sending page's origin, from the browser: `sender.origin` (Chromium,
// and Firefox where it has it), else the origin of `sender.url`. Only a
// top-level page of this extension's own content script; https, or http
// on a loopback host.
function originOf(sender) {
  if (!sender || sender.id !== api.runtime.id || !sender.tab) {
    return null;
  }
  if (typeof sender.frameId === 'number' && sender.frameId !== 0) {
    return null;
  }
  let origin = typeof sender.origin === 'string' && sender.origin !== 'null'
    ? sender.origin
    : null;
  if (origin === null) {
    try {
      origin = new URL(sender.url).origin;
    } catch (_) {
      return null;
    }
  }
  let url;
  try {
    url = new URL(origin);
  } catch (_) {
    return null;
  }
  if (url.origin !== origin) {
    return null;
  }
  if (url.protocol === 'https:') {
    return origin;
  }
  if (url.protocol === 'http:' && LOOPBACK.has(url.hostname)) {
    return origin;
  }
  return null;
}

// runtime.sendNativeMessage, as a promise in either browser.
function sendNative(message) {
  if (globalThis.browser) {
    return globalThis.browser.runtime.sendNativeMessage(HOST, message);
  }
  return new Promise((resolve, reject) => {
    globalThis.chrome.runtime.sendNativeMessage(HOST, message, (reply) => {
      const err = globalThis.chrome.runtime.lastError;
      if (err) {
        reject(new Error(err.message));
      } else {
        resolve(reply);
      }
    });
  });
}

// Why the host could not be asked. Chromium: "Specified native messaging
// host not found.", "Access to the specified native messaging host is
// forbidden.", "Failed to start native messaging host.", "Native host has
// exited.", "Error when communicating with the native messaging host.".
// Firefox: "No such native application certagent" (also when the host's
// manifest does not allow this extension), and others once it started.
function hostFailure(e) {
  const text = e && typeof e.message === 'string' ? e.message : String(e);
  if (/not found|forbidden|failed to start|no such native application/i.test(text)) {
    return failure(503, 'host-not-installed',
      `certagent's native messaging host is not installed for this browser (${text})`);
  }
  return failure(502, 'host-failed', `certagent's native messaging host failed (${text})`);
}

// Chromium stops an idle service worker after 30 s; a logon waits for the
// user's consent and PIN for longer. Any extension API call counts as
// activity, so one every 20 s while a request is out keeps the worker (and
// the answer's way back to the page) alive. Firefox keeps its event page
// alive while a native message is pending, and this does no harm there.
let pending = 0;
let keepAlive = null;

function started() {
  pending += 1;
  if (keepAlive === null) {
    keepAlive = setInterval(() => {
      try {
        if (globalThis.browser) {
          globalThis.browser.runtime.getPlatformInfo().catch(() => {});
        } else {
          globalThis.chrome.runtime.getPlatformInfo(() => void globalThis.chrome.runtime.lastError);
        }
      } catch (_) {
        // Nothing to keep alive any more.
      }
    }, 20 * 1000);
  }
}

function finished() {
  pending -= 1;
  if (pending <= 0 && keepAlive !== null) {
    clearInterval(keepAlive);
    keepAlive = null;
    pending = 0;
  }
}

async function handle(message, sender) {
  const origin = originOf(sender);
  if (origin === null) {
    return failure(403, 'origin', 'this web page is not allowed to use certagent');
  }
  if (!plainObject(message) || !allowed(message.method, message.path)) {
    return failure(400, 'bad-request', 'only the certagent API\'s requests go through the extension');
  }
  if (message.body !== undefined && message.body !== null && !plainObject(message.body)) {
    return failure(400, 'bad-request', 'the body must be a JSON object');
  }
  const request = {
    origin,
    method: message.method,
    path: message.path,
    body: message.body ?? null,
  };
  if (new TextEncoder().encode(JSON.stringify(request)).length > MAX_REQUEST) {
    return failure(413, 'too-large', `the request is larger than ${MAX_REQUEST} bytes`);
  }
  started();
  try {
    let reply;
    try {
      reply = await sendNative(request);
    } catch (e) {
      return hostFailure(e);
    }
    if (!plainObject(reply) || !Number.isInteger(reply.status) ||
        reply.status < 100 || reply.status > 599 || !plainObject(reply.body)) {
      return failure(502, 'host-failed', 'certagent\'s native messaging host gave an answer that is not {status, body}');
    }
    return { status: reply.status, body: reply.body };
  } finally {
    finished();
  }
}

api.runtime.onMessage.addListener((message, sender, sendResponse) => {
  handle(message, sender).then(sendResponse, (e) => {
    sendResponse(failure(500, 'extension', `the certagent extension failed (${e && e.message})`));
  });
  return true;
});
