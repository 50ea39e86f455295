// Sign in with a token, or with a username and password where a userpass
// auth method is enabled (POST auth/<mount>/login/<user>).

import { api, ApiError, encodePath } from '../api.js';
import { ErrorMessage, Field, PageHeader } from '../components.js';
import { html, useEffect, useState } from '../lib.js';

/**
 * Userpass mounts from GET sys/auth. Without a token that call may be
 * refused (403): the method is then offered anyway at the default path, and
 * a 404 at login says it is not enabled. A 404 of sys/auth (no auth methods
 * on this server) hides it.
 */
async function userpassMounts() {
  try {
    const body = await api('GET', 'sys/auth', undefined, { auth: false });
    return Object.entries(body.data ?? body).filter(([, m]) => m?.type === 'userpass').map(([p]) => p);
  } catch (err) {
    return err instanceof ApiError && err.status === 403 ? ['userpass/'] : [];
  }
}

export function SignIn({ onSignIn, sealed }) {
  const [method, setMethod] = useState('token');
  const [mounts, setMounts] = useState([]);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);

  useEffect(() => {
    userpassMounts().then(setMounts);
  }, []);

  const submit = async (e) => {
    e.preventDefault();
    const form = new FormData(e.currentTarget);
    setBusy(true);
    setError(null);
    try {
      if (method === 'token') {
        const token = String(form.get('token')).trim();
        if (!token) throw new Error('Enter a token.');
        const res = await fetch('/v1/auth/token/lookup-self', { headers: { 'X-Vault-Token': token } });
        if (res.status === 403) throw new Error('That token is not valid (it may have expired or been revoked).');
        if (res.status === 503) throw new Error('The broker is sealed: unseal it first (Status page).');
        if (!res.ok) throw new Error(`The token could not be checked (HTTP ${res.status}).`);
        onSignIn(token);
      } else {
        const username = String(form.get('username')).trim();
        const mount = String(form.get('mount') ?? mounts[0]);
        if (!username) throw new Error('Enter a username.');
        try {
          const body = await api('PUT', `auth/${encodePath(mount.replace(/\/$/, ''))}/login/${encodeURIComponent(username)}`, { password: String(form.get('password')) }, { auth: false });
          onSignIn(body.auth.client_token);
        } catch (err) {
          if (err instanceof ApiError && err.status === 404) throw new Error(`Username and password sign-in is not enabled on this broker (nothing at auth/${mount}).`);
          throw err;
        }
      }
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };

  return html`<section class="sign-in card">
    <${PageHeader} title="Sign in to dbroker" />
    ${sealed ? html`<p class="alert alert-warn">The broker is sealed. <a href="#/status">Unseal it</a> before signing in.</p>` : null}
    ${mounts.length > 0
      ? html`<fieldset class="segmented">
          <legend>Method</legend>
          <label><input type="radio" name="method" value="token" checked=${method === 'token'} onChange=${() => setMethod('token')} /> Token</label>
          <label><input type="radio" name="method" value="userpass" checked=${method === 'userpass'} onChange=${() => setMethod('userpass')} /> Username & password</label>
        </fieldset>`
      : null}
    <form onSubmit=${submit} aria-describedby="signin-error">
      ${method === 'token'
        ? html`<${Field} id="token" label="Token" hint="A dbroker (Vault-style) token. It is kept in this tab only and forgotten when the tab closes.">
            <input id="token" name="token" type="password" autocomplete="off" required aria-describedby="token-hint" />
          <//>`
        : html`
            ${mounts.length > 1
              ? html`<${Field} id="mount" label="Auth mount"><select id="mount" name="mount">${mounts.map((m) => html`<option>${m}</option>`)}</select><//>`
              : null}
            <${Field} id="username" label="Username"><input id="username" name="username" autocomplete="username" required /><//>
            <${Field} id="password" label="Password"><input id="password" name="password" type="password" autocomplete="current-password" required /><//>
          `}
      <${ErrorMessage} error=${error} id="signin-error" />
      <div class="actions"><button type="submit" class="btn btn-primary" disabled=${busy}>${busy ? 'Signing in…' : 'Sign in'}</button></div>
    </form>
  </section>`;
}
