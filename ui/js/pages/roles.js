// Dynamic roles of a database mount: list, create/edit (PUT
// <mount>roles/<name>: the API validates the statements and its 400 is shown
// on the field it names), delete, and "get credentials" (GET
// <mount>creds/<name>), shown once with copy buttons.

import { api, encodePath, list } from '../api.js';
import { Confirm, CopyButton, Countdown, Dialog, EmptyState, ErrorMessage, Field, Loading, Notice, PageHeader, describedBy, formatDuration, goDuration, useLoad } from '../components.js';
import { html, useState } from '../lib.js';

const STATEMENTS = [
  ['creation_statements', 'Creation statements', 'Run to create the user. {{name}}, {{password}} and {{expiration}} are filled in.'],
  ['revocation_statements', 'Revocation statements', 'Run to drop the user (empty: the engine default).'],
  ['renew_statements', 'Renew statements', 'Run on renewal (empty: the engine default, e.g. VALID UNTIL).'],
  ['rollback_statements', 'Rollback statements', 'Run when creation fails half-way.'],
];

/** The API's statement list as one editable text. */
const statementsText = (list) => (list ?? []).map((s) => s.trim().replace(/;?$/, ';')).join('\n');

function RoleForm({ mount, existing, connections, onSaved, onCancel }) {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const r = existing?.role;
  const fieldError = (name) => (error?.field === name ? error.message : undefined);

  const submit = async (e) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget);
    const name = existing ? existing.name : String(f.get('name')).trim();
    const body = {
      db_name: String(f.get('db_name')),
      default_ttl: String(f.get('default_ttl')).trim() || 0,
      max_ttl: String(f.get('max_ttl')).trim() || 0,
      username_template: String(f.get('username_template')),
    };
    for (const [field] of STATEMENTS) {
      const text = String(f.get(field) ?? '').trim();
      body[field] = text ? [text] : [];
    }
    setBusy(true);
    setError(null);
    try {
      if (!name) throw Object.assign(new Error('Enter a name.'), { field: 'name' });
      const res = await api('PUT', `${mount}roles/${encodePath(name)}`, body);
      onSaved(name, res?.warnings);
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };

  const text = (id, label, hint, props = {}) => html`<${Field} id=${`role-${id}`} label=${label} hint=${hint} error=${fieldError(id)}>
    <input id=${`role-${id}`} name=${id} aria-invalid=${fieldError(id) ? 'true' : undefined} aria-describedby=${describedBy(`role-${id}`, hint, fieldError(id))} ...${props} />
  <//>`;
  const area = ([id, label, hint], rows) => html`<${Field} id=${`role-${id}`} label=${label} hint=${hint} error=${fieldError(id)}>
    <textarea id=${`role-${id}`} name=${id} rows=${rows} spellcheck=${false} class="code" aria-invalid=${fieldError(id) ? 'true' : undefined}
      aria-describedby=${describedBy(`role-${id}`, hint, fieldError(id))} defaultValue=${statementsText(r?.[id])}></textarea>
  <//>`;

  return html`<form class="card form" onSubmit=${submit} aria-labelledby="role-form-title">
    <h2 id="role-form-title">${existing ? `Edit role ${existing.name}` : 'New role'}</h2>
    <div class="grid">
      ${text('name', 'Name', undefined, { required: true, defaultValue: existing?.name ?? '', disabled: !!existing, autocomplete: 'off' })}
      <${Field} id="role-db_name" label="Connection" error=${fieldError('db_name')}>
        <select id="role-db_name" name="db_name" required>
          ${connections.map((c) => html`<option value=${c} selected=${c === r?.db_name}>${c}</option>`)}
        </select>
      <//>
      ${text('default_ttl', 'Default TTL', 'e.g. 1h, 30m or seconds (empty: the system default).', { defaultValue: goDuration(r?.default_ttl ?? 0) })}
      ${text('max_ttl', 'Maximum TTL', 'Renewals stop here, counted from issue.', { defaultValue: goDuration(r?.max_ttl ?? 0) })}
      <div class="span-2">${area(STATEMENTS[0], 4)}</div>
      <div class="span-2">${area(STATEMENTS[1], 2)}</div>
      <details class="span-2" open=${!!(r?.renew_statements?.length || r?.rollback_statements?.length || r?.username_template)}>
        <summary>More settings</summary>
        ${area(STATEMENTS[2], 2)}
        ${area(STATEMENTS[3], 2)}
        ${text('username_template', 'Username template', 'Go template, e.g. {{ printf "app-%s" (random 12) }} (empty: the default).', { defaultValue: r?.username_template ?? '', spellcheck: false })}
      </details>
    </div>
    <${ErrorMessage} error=${error} />
    <div class="actions">
      <button type="button" class="btn" onClick=${onCancel}>Cancel</button>
      <button type="submit" class="btn btn-primary" disabled=${busy}>${busy ? 'Saving…' : existing ? 'Save changes' : 'Create role'}</button>
    </div>
  </form>`;
}

/** The credentials of one issue, shown once: closing the dialog forgets them. */
function CredentialsDialog({ role, creds, onClose }) {
  const until = creds.issuedAt + creds.lease_duration * 1000;
  return html`<${Dialog} title=${`Credentials for ${role}`} onClose=${onClose} wide>
    <p class="alert alert-warn">Shown once. Copy them now: they cannot be displayed again. They stop working when the lease ends or is revoked.</p>
    <dl class="facts creds">
      <div><dt>Username</dt><dd><code data-testid="cred-username">${creds.data.username}</code> <${CopyButton} value=${creds.data.username} label="username" /></dd></div>
      <div><dt>Password</dt><dd><code data-testid="cred-password">${creds.data.password}</code> <${CopyButton} value=${creds.data.password} label="password" /></dd></div>
      <div><dt>Lease</dt><dd><code data-testid="cred-lease">${creds.lease_id}</code> <${CopyButton} value=${creds.lease_id} label="lease id" /></dd></div>
      <div><dt>Time left</dt><dd><${Countdown} until=${until} /> of ${formatDuration(creds.lease_duration)}${creds.renewable ? ' (renewable)' : ''}</dd></div>
    </dl>
    ${creds.warnings?.length ? html`<p class="alert alert-warn">${creds.warnings.join(' ')}</p>` : null}
    <div class="actions"><button type="button" class="btn btn-primary" onClick=${onClose} autofocus>Done</button></div>
  <//>`;
}

export function Roles({ mount }) {
  const [state, reload] = useLoad(async () => {
    const [names, connections] = await Promise.all([list(`${mount}roles`), list(`${mount}config`)]);
    const roles = await Promise.all(names.map(async (name) => ({ name, role: (await api('GET', `${mount}roles/${encodePath(name)}`)).data })));
    return { roles, connections };
  }, [mount]);
  const [form, setForm] = useState(null);
  const [confirm, setConfirm] = useState(null);
  const [creds, setCreds] = useState(null);
  const [issuing, setIssuing] = useState('');
  const [error, setError] = useState(null);
  const [notice, setNotice] = useState('');

  const getCreds = async (name) => {
    setIssuing(name);
    setError(null);
    setNotice('');
    try {
      const body = await api('GET', `${mount}creds/${encodePath(name)}`);
      setCreds({ role: name, creds: { ...body, issuedAt: Date.now() } });
    } catch (err) {
      setError(err);
    } finally {
      setIssuing('');
    }
  };
  const saved = (name, warnings) => {
    setForm(null);
    setNotice(`Role ${name} saved.${warnings?.length ? ` Warnings: ${warnings.join('; ')}` : ''}`);
    reload();
  };
  const d = state.data;

  return html`<section>
    <${PageHeader} title="Roles">
      <button type="button" class="btn btn-primary" disabled=${!d?.connections.length} onClick=${() => { setNotice(''); setForm('new'); }}>New role</button>
      <button type="button" class="btn" onClick=${reload}>Refresh</button>
    <//>
    <p class="lead">Each role says how the broker creates a short-lived database user, and for how long.</p>
    <${Notice} text=${notice} />
    <${ErrorMessage} error=${state.error ?? error} />
    ${form && d ? html`<${RoleForm} key=${form === 'new' ? 'new' : form.name} mount=${mount} existing=${form === 'new' ? null : form} connections=${d.connections} onSaved=${saved} onCancel=${() => setForm(null)} />` : null}
    ${state.loading && !d ? html`<${Loading} what="roles" />` : null}
    ${d && d.roles.length === 0 && !form
      ? html`<${EmptyState} title="No roles yet">
          ${d.connections.length === 0
            ? html`<p>Roles issue users through a connection. <a href="#/connections">Add a connection</a> first.</p>`
            : html`<p>A role holds the SQL that creates a user and the TTL of its lease.</p>
                <button type="button" class="btn btn-primary" onClick=${() => setForm('new')}>Create the first role</button>`}
        <//>`
      : null}
    ${d?.roles.length
      ? html`<div class="table-wrap"><table>
          <caption class="visually-hidden">Roles of ${mount}</caption>
          <thead><tr><th scope="col">Role</th><th scope="col">Connection</th><th scope="col">Default TTL</th><th scope="col">Max TTL</th><th scope="col"><span class="visually-hidden">Actions</span></th></tr></thead>
          <tbody>
            ${d.roles.map(
              ({ name, role }) => html`<tr data-role=${name}>
                <th scope="row">${name}</th>
                <td>${role.db_name}</td>
                <td>${role.default_ttl ? formatDuration(role.default_ttl) : html`<span class="muted">system default</span>`}</td>
                <td>${role.max_ttl ? formatDuration(role.max_ttl) : html`<span class="muted">system max</span>`}</td>
                <td class="row-actions">
                  <button type="button" class="btn btn-primary btn-small" onClick=${() => getCreds(name)} disabled=${issuing === name}>${issuing === name ? 'Issuing…' : 'Get credentials'}</button>
                  <button type="button" class="btn btn-small" onClick=${() => { setNotice(''); setForm({ name, role }); }}>Edit</button>
                  <button type="button" class="btn btn-small btn-ghost-danger" onClick=${() => setConfirm(name)}>Delete…</button>
                </td>
              </tr>`,
            )}
          </tbody>
        </table></div>`
      : null}
    ${creds ? html`<${CredentialsDialog} role=${creds.role} creds=${creds.creds} onClose=${() => setCreds(null)} />` : null}
    ${confirm
      ? html`<${Confirm} title=${`Delete role ${confirm}?`} confirmLabel="Delete" onClose=${() => setConfirm(null)}
          action=${() => api('DELETE', `${mount}roles/${encodePath(confirm)}`)}
          onDone=${() => { setNotice(`Role ${confirm} deleted.`); reload(); }}>
          <p>No new credentials can be issued for <strong>${confirm}</strong>. The broker refuses while leases of this role are active.</p>
        <//>`
      : null}
  </section>`;
}
