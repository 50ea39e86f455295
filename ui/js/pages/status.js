// Seal status (no token needed), the unseal form, and sealing (sudo).

import { api } from '../api.js';
import { Confirm, ErrorMessage, Field, Loading, Notice, PageHeader, useLoad } from '../components.js';
import { html, useState } from '../lib.js';

export function Status({ signedIn, onSealChange }) {
  const [state, reload] = useLoad(async () => {
    const seal = await api('GET', 'sys/seal-status', undefined, { auth: false });
    const health = await fetch('/v1/sys/health').then((r) => r.json()).catch(() => ({}));
    return { ...seal, version: health.version ?? seal.version };
  }, []);
  const [error, setError] = useState(null);
  const [notice, setNotice] = useState('');
  const [confirmSeal, setConfirmSeal] = useState(false);

  const unseal = async (e) => {
    e.preventDefault();
    const form = e.currentTarget;
    const key = String(new FormData(form).get('key')).trim();
    setError(null);
    setNotice('');
    try {
      const s = await api('PUT', 'sys/unseal', { key }, { auth: false });
      form.reset();
      setNotice(s.sealed ? `Key accepted: ${s.progress} of ${s.t} keys given.` : 'Unsealed.');
      onSealChange(s.sealed);
      reload();
    } catch (err) {
      setError(err);
    }
  };
  const resetProgress = async () => {
    setError(null);
    try {
      await api('PUT', 'sys/unseal', { reset: true }, { auth: false });
      setNotice('Unseal progress reset.');
      reload();
    } catch (err) {
      setError(err);
    }
  };

  const s = state.data;
  return html`<section>
    <${PageHeader} title="Status" />
    <${Notice} text=${notice} />
    ${state.loading && !s ? html`<${Loading} what="seal status" />` : null}
    <${ErrorMessage} error=${state.error} />
    ${s
      ? html`<div class="card">
          <dl class="facts">
            <div><dt>State</dt><dd data-testid="seal-state">${!s.initialized ? html`<span class="badge badge-warn">not initialized</span>` : s.sealed ? html`<span class="badge badge-danger">sealed</span>` : html`<span class="badge badge-ok">unsealed</span>`}</dd></div>
            <div><dt>Key shares</dt><dd>${s.n}</dd></div>
            <div><dt>Threshold</dt><dd>${s.t}</dd></div>
            ${s.sealed ? html`<div><dt>Unseal progress</dt><dd><progress max=${s.t} value=${s.progress} aria-label="Unseal progress"></progress> ${s.progress} of ${s.t}</dd></div>` : null}
            <div><dt>Version</dt><dd>${s.version ?? '—'}</dd></div>
          </dl>
        </div>
        ${!s.initialized
          ? html`<div class="empty"><p class="empty-title">This broker has not been initialized</p><p>Run <code>dbroker operator init</code> on the server to create the unseal keys and the root token, then unseal here.</p></div>`
          : s.sealed
            ? html`<form class="card" onSubmit=${unseal}>
                <h2>Unseal</h2>
                <${Field} id="unseal-key" label="Unseal key" hint=${`Enter ${s.t} key${s.t > 1 ? 's' : ''}, one at a time (hex or base64). Keys are sent to the broker only.`}>
                  <input id="unseal-key" name="key" type="password" autocomplete="off" required aria-describedby="unseal-key-hint" />
                <//>
                <${ErrorMessage} error=${error} />
                <div class="actions">
                  <button type="submit" class="btn btn-primary">Submit key</button>
                  ${s.progress > 0 ? html`<button type="button" class="btn" onClick=${resetProgress}>Reset progress</button>` : null}
                </div>
              </form>`
            : signedIn
              ? html`<div class="card">
                  <h2>Seal</h2>
                  <p>Sealing stops all issuing, renewing and revoking until the broker is unsealed again with the unseal keys.</p>
                  <${ErrorMessage} error=${error} />
                  <div class="actions"><button type="button" class="btn btn-danger" onClick=${() => setConfirmSeal(true)}>Seal now…</button></div>
                </div>`
              : null}`
      : null}
    ${confirmSeal
      ? html`<${Confirm} title="Seal the broker?" confirmLabel="Seal" onClose=${() => setConfirmSeal(false)}
          action=${() => api('PUT', 'sys/seal')} onDone=${() => { onSealChange(true); setNotice('Sealed.'); reload(); }}>
          <p>Every client loses access until the broker is unsealed with ${s?.t ?? 'the'} unseal key(s).</p>
        <//>`
      : null}
  </section>`;
}
