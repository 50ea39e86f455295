// The broker's public /v1/ API, as any Vault client calls it. The token lives
// in sessionStorage only (gone when the tab closes) and goes out as
// X-Vault-Token.

const TOKEN_KEY = 'dbroker.token';

export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY) ?? '';
  },
  signIn(token) {
    sessionStorage.setItem(TOKEN_KEY, token);
  },
  signOut() {
    sessionStorage.removeItem(TOKEN_KEY);
  },
};

/** An error answer of the API: `status` (0 when unreachable) and its `errors` messages. */
export class ApiError extends Error {
  constructor(status, messages) {
    super(messages.length > 0 ? messages.join('; ') : `request failed with HTTP ${status}`);
    this.status = status;
    this.messages = messages;
  }

  /** The field a 400 names (`invalid field "x": ...`), if any. */
  get field() {
    return /invalid field "([^"]+)"/.exec(this.message)?.[1] ?? /missing required field "([^"]+)"/.exec(this.message)?.[1];
  }
}

/** Encode each segment of a path (names and lease ids keep their slashes). */
export const encodePath = (path) => path.split('/').map(encodeURIComponent).join('/');

/**
 * Call `method` (GET, PUT, DELETE or LIST) on /v1/<path>. Resolves to the
 * parsed body (null for a 204); rejects with ApiError. A 503 also fires the
 * window event "dbroker:sealed" so the shell can show the seal state.
 */
export async function api(method, path, body, { auth = true } = {}) {
  const headers = {};
  if (auth && session.token) headers['X-Vault-Token'] = session.token;
  const init = { method: method === 'LIST' ? 'GET' : method, headers };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(`/v1/${path}${method === 'LIST' ? '?list=true' : ''}`, init);
  } catch (err) {
    throw new ApiError(0, [`the broker cannot be reached (${err.message})`]);
  }
  if (res.status === 204) return null;
  const text = await res.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    json = null;
  }
  if (!res.ok) {
    if (res.status === 503) window.dispatchEvent(new CustomEvent('dbroker:sealed'));
    throw new ApiError(res.status, Array.isArray(json?.errors) ? json.errors : [text || res.statusText]);
  }
  return json;
}

/** LIST keys under `path`; an empty list (Vault's 404) is []. */
export async function list(path) {
  try {
    return (await api('LIST', path)).data.keys;
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return [];
    throw err;
  }
}
