// Leases: browse by prefix (LIST sys/leases/lookup/<prefix>), look each up
// (TTL countdown), renew, revoke, revoke a whole prefix, and the revocations
// that keep failing (GET sys/leases?type=irrevocable).

import { api, encodePath, list } from '../api.js';
import { Confirm, Countdown, EmptyState, ErrorMessage, Field, Loading, Notice, PageHeader, Time, useLoad } from '../components.js';
import { html, useState } from '../lib.js';

/** Leaves looked up at once; a longer listing shows a "look up" button per lease. */
const AUTO_LOOKUP = 50;

async function lookup(id) {
  const body = await api('PUT', 'sys/leases/lookup', { lease_id: id });
  return { ...body.data, fetchedAt: Date.now() };
}

function Irrevocable() {
  const [state, reload] = useLoad(() => api('GET', 'sys/leases?type=irrevocable').then((b) => b.data), []);
  const d = state.data;
  return html`<section class="card" aria-labelledby="stuck-title">
    <div class="item-head">
      <h2 id="stuck-title">Stuck revocations</h2>
      ${d?.lease_count ? html`<span class="badge badge-danger" data-testid="stuck-count">${d.lease_count}</span>` : null}
      <button type="button" class="btn btn-small push-right" onClick=${reload}>Refresh</button>
    </div>
    <p class="muted">Leases whose database user could not be dropped after repeated attempts. The broker keeps retrying with backoff; fix the cause (often the database being unreachable) and they clear on the next attempt.</p>
    <${ErrorMessage} error=${state.error} />
    ${state.loading && !d ? html`<${Loading} what="stuck revocations" />` : null}
    ${d && d.leases.length === 0 ? html`<${EmptyState} title="No stuck revocations"><p>Every revocation so far has succeeded or is still within its first attempts.</p><//>` : null}
    ${d?.leases.length
      ? html`<div class="table-wrap"><table data-testid="irrevocable">
          <thead><tr><th scope="col">Lease</th><th scope="col">Connection</th><th scope="col">Attempts</th><th scope="col">Last error</th><th scope="col">Next attempt</th></tr></thead>
          <tbody>${d.leases.map(
            (l) => html`<tr data-lease=${l.lease_id}>
              <td class="lease"><code class="wrap">${l.lease_id}</code></td>
              <td>${l.connection}</td>
              <td class="num">${l.attempts}</td>
              <td class="error-text">${l.error}</td>
              <td><${Time} iso=${l.next_attempt} empty="—" /></td>
            </tr>`,
          )}</tbody>
        </table></div>`
      : null}
  </section>`;
}

function LeaseRow({ id, info, onLookup, onRenew, onRevoke }) {
  return html`<tr data-lease=${id}>
    <td class="lease"><code class="wrap">${id}</code></td>
    ${info
      ? html`<td><${Time} iso=${info.issue_time} /></td>
          <td>${info.revocation_attempts
            ? html`<span class="badge badge-danger">revoking</span> <span class="muted">attempt ${info.revocation_attempts}: ${info.last_revocation_error}</span>`
            : html`<${Countdown} until=${info.fetchedAt + info.ttl * 1000} />`}</td>
          <td>${info.renewable ? 'yes' : 'no'}</td>`
      : html`<td colspan="3"><button type="button" class="btn btn-small" onClick=${onLookup}>Look up</button></td>`}
    <td class="row-actions">
      <button type="button" class="btn btn-small" onClick=${onRenew} disabled=${info && !info.renewable} aria-label=${`Renew ${id}`}>Renew</button>
      <button type="button" class="btn btn-small btn-ghost-danger" onClick=${onRevoke} aria-label=${`Revoke ${id}`}>Revoke…</button>
    </td>
  </tr>`;
}

export function Leases({ mount }) {
  const [prefix, setPrefix] = useState(`${mount}creds/`);
  const [infos, setInfos] = useState({});
  const [state, reload] = useLoad(async () => {
    const keys = await list(`sys/leases/lookup/${encodePath(prefix.replace(/\/$/, ''))}`);
    const folders = keys.filter((k) => k.endsWith('/'));
    const leaves = keys.filter((k) => !k.endsWith('/')).map((k) => prefix + k);
    const looked = await Promise.all(leaves.slice(0, AUTO_LOOKUP).map((id) => lookup(id).then((i) => [id, i], () => [id, null])));
    setInfos(Object.fromEntries(looked.filter(([, i]) => i)));
    return { folders, leaves };
  }, [prefix]);
  const [confirm, setConfirm] = useState(null);
  const [error, setError] = useState(null);
  const [notice, setNotice] = useState('');
  const [stuckKey, setStuckKey] = useState(0);

  const go = (p) => {
    setNotice('');
    setError(null);
    const next = p === '' || p.endsWith('/') ? p : `${p}/`;
    if (next === prefix) reload();
    else setPrefix(next);
    setStuckKey((k) => k + 1);
  };
  const refreshOne = async (id) => {
    try {
      const info = await lookup(id);
      setInfos((all) => ({ ...all, [id]: info }));
    } catch (err) {
      setError(err);
    }
  };
  const renew = async (id) => {
    setError(null);
    try {
      const body = await api('PUT', 'sys/leases/renew', { lease_id: id });
      // The row shows the new TTL before the notice says it is renewed.
      await refreshOne(id);
      setNotice(`Lease renewed for ${body.lease_duration} s.${body.warnings?.length ? ` ${body.warnings.join(' ')}` : ''}`);
    } catch (err) {
      setError(err);
    }
  };
  const afterRevoke = (text) => {
    setNotice(text);
    reload();
    setStuckKey((k) => k + 1);
  };

  const segments = prefix.split('/').filter(Boolean);
  const d = state.data;
  return html`<section>
    <${PageHeader} title="Leases"><button type="button" class="btn" onClick=${() => { reload(); setStuckKey((k) => k + 1); }}>Refresh</button><//>
    <form class="card form inline-form" onSubmit=${(e) => { e.preventDefault(); go(String(new FormData(e.currentTarget).get('prefix')).trim()); }}>
      <${Field} id="lease-prefix" label="Lease prefix" hint="e.g. database/creds/ or database/creds/app/">
        <input id="lease-prefix" name="prefix" defaultValue=${prefix} key=${prefix} spellcheck=${false} autocomplete="off" aria-describedby="lease-prefix-hint" />
      <//>
      <div class="actions"><button type="submit" class="btn btn-primary">Browse</button></div>
    </form>
    <nav aria-label="Prefix path" class="crumbs">
      <ol>
        <li><button type="button" class="link" onClick=${() => go('')}>all</button></li>
        ${segments.map((s, i) => html`<li><button type="button" class="link" aria-current=${i === segments.length - 1 ? 'location' : undefined} onClick=${() => go(`${segments.slice(0, i + 1).join('/')}/`)}>${s}</button></li>`)}
      </ol>
    </nav>
    <${Notice} text=${notice} />
    <${ErrorMessage} error=${state.error ?? error} />
    ${state.loading && !d ? html`<${Loading} what="leases" />` : null}
    ${d && d.folders.length === 0 && d.leaves.length === 0
      ? html`<${EmptyState} title=${`No leases under ${prefix || 'any prefix'}`}><p>Leases appear here when credentials are issued (Roles → Get credentials, or <code>dbroker read ${mount}creds/ROLE</code>).</p><//>`
      : null}
    ${d?.folders.length
      ? html`<ul class="folders" aria-label="Sub-prefixes">${d.folders.map((f) => html`<li><button type="button" class="btn folder" onClick=${() => go(prefix + f)}>${f}</button></li>`)}</ul>`
      : null}
    ${d?.leaves.length
      ? html`<div class="table-wrap"><table data-testid="leases">
          <caption class="visually-hidden">Leases under ${prefix}</caption>
          <thead><tr><th scope="col">Lease</th><th scope="col">Issued</th><th scope="col">Time left</th><th scope="col">Renewable</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
          <tbody>${d.leaves.map(
            (id) => html`<${LeaseRow} key=${id} id=${id} info=${infos[id]} onLookup=${() => refreshOne(id)} onRenew=${() => renew(id)} onRevoke=${() => setConfirm({ kind: 'one', id })} />`,
          )}</tbody>
        </table></div>`
      : null}
    ${d && prefix && (d.folders.length || d.leaves.length)
      ? html`<div class="actions danger-zone"><button type="button" class="btn btn-danger" onClick=${() => setConfirm({ kind: 'prefix', id: prefix })}>Revoke everything under ${prefix}…</button></div>`
      : null}
    <${Irrevocable} key=${stuckKey} />
    ${confirm?.kind === 'one'
      ? html`<${Confirm} title="Revoke this lease?" confirmLabel="Revoke" onClose=${() => setConfirm(null)}
          action=${() => api('PUT', 'sys/leases/revoke', { lease_id: confirm.id })} onDone=${() => afterRevoke('Lease revoked: its database user was dropped.')}>
          <p>The database user of <code class="wrap">${confirm.id}</code> is dropped now and its sessions are ended.</p>
        <//>`
      : null}
    ${confirm?.kind === 'prefix'
      ? html`<${Confirm} title=${`Revoke every lease under ${confirm.id}?`} confirmLabel="Revoke all" onClose=${() => setConfirm(null)}
          action=${() => api('PUT', `sys/leases/revoke-prefix/${encodePath(confirm.id.replace(/\/$/, ''))}`)} onDone=${() => afterRevoke(`Every lease under ${confirm.id} was revoked.`)}>
          <p>Every database user issued under <code>${confirm.id}</code> is dropped, including leases not shown on this page. This cannot be undone.</p>
        <//>`
      : null}
  </section>`;
}
