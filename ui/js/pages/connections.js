// Connections of a database mount: LIST <mount>config, GET each; create and
// edit (PUT <mount>config/<name>, the API checks the login), root rotation
// state, "rotate now" (PUT <mount>rotate-root/<name>) and delete.

import { api, encodePath, list } from '../api.js';
import { Confirm, EmptyState, ErrorMessage, Field, Loading, Notice, PageHeader, Time, describedBy, formatDuration, goDuration, useLoad } from '../components.js';
import { html, useState } from '../lib.js';

const PLUGINS = ['postgresql-database-plugin', 'mysql-database-plugin', 'mysql-legacy-database-plugin', 'mongodb-database-plugin'];

function ConnectionForm({ mount, existing, onSaved, onCancel }) {
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const editing = !!existing;
  const c = existing?.config;
  const fieldError = (name) => (error?.field === name ? error.message : undefined);

  const submit = async (e) => {
    e.preventDefault();
    const f = new FormData(e.currentTarget);
    const name = editing ? existing.name : String(f.get('name')).trim();
    const body = {
      plugin_name: editing ? c.plugin_name : String(f.get('plugin_name')),
      username: String(f.get('username')),
      allowed_roles: String(f.get('allowed_roles')).split(',').map((s) => s.trim()).filter(Boolean),
      verify_connection: f.get('verify_connection') === 'on',
      root_rotation_period: String(f.get('root_rotation_period')).trim() || 0,
      root_rotation_schedule: String(f.get('root_rotation_schedule')).trim(),
    };
    const url = String(f.get('connection_url')).trim();
    // GET shows the URL with any literal password masked: send it only when changed.
    if (!editing || url !== c.connection_details.connection_url) body.connection_url = url;
    const password = String(f.get('password'));
    if (password !== '' || !editing) body.password = password;
    setBusy(true);
    setError(null);
    try {
      if (!name) throw Object.assign(new Error('Enter a name.'), { field: 'name' });
      const res = await api('PUT', `${mount}config/${encodePath(name)}`, body);
      onSaved(name, res?.warnings);
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };

  const input = (id, label, props = {}, hint) => html`<${Field} id=${`conn-${id}`} label=${label} hint=${hint} error=${fieldError(id)}>
    <input id=${`conn-${id}`} name=${id} aria-invalid=${fieldError(id) ? 'true' : undefined} aria-describedby=${describedBy(`conn-${id}`, hint, fieldError(id))} ...${props} />
  <//>`;

  return html`<form class="card form" onSubmit=${submit} aria-labelledby="conn-form-title">
    <h2 id="conn-form-title">${editing ? `Edit connection ${existing.name}` : 'New connection'}</h2>
    <div class="grid">
      ${input('name', 'Name', { required: true, defaultValue: existing?.name ?? '', disabled: editing, pattern: '[A-Za-z0-9_.\\-]+', autocomplete: 'off' })}
      <${Field} id="conn-plugin_name" label="Plugin" error=${fieldError('plugin_name')}>
        <select id="conn-plugin_name" name="plugin_name" disabled=${editing}>
          ${(editing ? [c.plugin_name] : PLUGINS).map((p) => html`<option value=${p} selected=${p === c?.plugin_name}>${p}</option>`)}
        </select>
      <//>
      <div class="span-2">${input('connection_url', 'Connection URL', { required: !editing, defaultValue: c?.connection_details?.connection_url ?? '', placeholder: 'postgres://{{username}}:{{password}}@db.example:5432/postgres', autocomplete: 'off', spellcheck: false }, 'Use {{username}} and {{password}}: the broker fills them in, and keeps the password to itself after a root rotation.')}</div>
      ${input('username', 'Admin username', { defaultValue: c?.connection_details?.username ?? '', autocomplete: 'off' })}
      ${input('password', 'Admin password', { type: 'password', autocomplete: 'new-password' }, editing ? 'Leave empty to keep the current password.' : 'Rotate it right after saving, so only the broker knows it.')}
      ${input('allowed_roles', 'Allowed roles', { defaultValue: (c?.allowed_roles ?? []).join(', '), placeholder: '* or role1, role2' }, 'Comma-separated role names; * allows every role.')}
      ${input('root_rotation_period', 'Root rotation period', { defaultValue: goDuration(c?.root_rotation_period ?? 0), placeholder: 'e.g. 24h (empty: none)' })}
      ${input('root_rotation_schedule', 'Root rotation schedule', { defaultValue: c?.root_rotation_schedule ?? '', placeholder: 'cron, e.g. 0 3 * * SUN (empty: none)' }, 'Set a period or a schedule, not both.')}
      <div class="field checkbox">
        <input id="conn-verify" name="verify_connection" type="checkbox" defaultChecked=${c ? c.verify_connection : true} />
        <label for="conn-verify">Verify the connection before saving</label>
      </div>
    </div>
    <${ErrorMessage} error=${error} />
    <div class="actions">
      <button type="button" class="btn" onClick=${onCancel}>Cancel</button>
      <button type="submit" class="btn btn-primary" disabled=${busy}>${busy ? 'Saving…' : editing ? 'Save changes' : 'Create connection'}</button>
    </div>
  </form>`;
}

function ConnectionCard({ conn, onEdit, onRotate, onDelete }) {
  const c = conn.config;
  const rotation = c.root_rotation_schedule ? `schedule ${c.root_rotation_schedule}` : c.root_rotation_period ? `every ${formatDuration(c.root_rotation_period)}` : 'manual only';
  return html`<article class="card item" data-connection=${conn.name} aria-labelledby=${`conn-${conn.name}`}>
    <div class="item-head">
      <h2 id=${`conn-${conn.name}`}>${conn.name}</h2>
      <span class="badge">${c.plugin_name}</span>
      ${c.last_root_rotation_error ? html`<span class="badge badge-danger">rotation failing</span>` : null}
    </div>
    <dl class="facts">
      <div class="span-2"><dt>Connection URL</dt><dd><code>${c.connection_details?.connection_url}</code></dd></div>
      <div><dt>Admin user</dt><dd><code>${c.connection_details?.username || '—'}</code></dd></div>
      <div><dt>Allowed roles</dt><dd>${c.allowed_roles?.length ? c.allowed_roles.join(', ') : html`<span class="muted">none (no role may issue)</span>`}</dd></div>
      <div><dt>Pool</dt><dd data-testid="pool-status">${c.pool_status ? (c.pool_status.open ? `open, ${c.pool_status.in_use} of ${c.pool_status.max_open_connections} in use` : 'not opened yet (opens on first use)') : '—'}</dd></div>
      <div><dt>Leases</dt><dd data-testid="lease-count">${c.lease_count ?? '—'}</dd></div>
      <div><dt>Root rotation</dt><dd>${rotation}</dd></div>
      <div><dt>Last root rotation</dt><dd data-testid="last-rotation"><${Time} iso=${c.last_root_rotation} /></dd></div>
      <div><dt>Next root rotation</dt><dd><${Time} iso=${c.next_root_rotation} empty="not scheduled" /></dd></div>
      ${c.last_root_rotation_error ? html`<div class="span-all"><dt>Last rotation error</dt><dd class="error-text">${c.last_root_rotation_error}</dd></div>` : null}
    </dl>
    <div class="actions">
      <button type="button" class="btn" onClick=${onEdit}>Edit</button>
      <button type="button" class="btn btn-warn" onClick=${onRotate}>Rotate root now…</button>
      <button type="button" class="btn btn-ghost-danger" onClick=${onDelete}>Delete…</button>
    </div>
  </article>`;
}

export function Connections({ mount }) {
  const [state, reload] = useLoad(async () => {
    const names = await list(`${mount}config`);
    return Promise.all(names.map(async (name) => ({ name, config: (await api('GET', `${mount}config/${encodePath(name)}`)).data })));
  }, [mount]);
  const [form, setForm] = useState(null); // null | 'new' | connection
  const [confirm, setConfirm] = useState(null);
  const [notice, setNotice] = useState('');

  const saved = (name, warnings) => {
    setForm(null);
    setNotice(`Connection ${name} saved.${warnings?.length ? ` Warnings: ${warnings.join('; ')}` : ''}`);
    reload();
  };

  return html`<section>
    <${PageHeader} title="Connections">
      <button type="button" class="btn btn-primary" onClick=${() => { setNotice(''); setForm('new'); }}>New connection</button>
      <button type="button" class="btn" onClick=${reload}>Refresh</button>
    <//>
    <p class="lead">Admin connections of <code>${mount}</code>: the broker creates and drops users through them and rotates their root password.</p>
    <${Notice} text=${notice} />
    ${form ? html`<${ConnectionForm} key=${form === 'new' ? 'new' : form.name} mount=${mount} existing=${form === 'new' ? null : form} onSaved=${saved} onCancel=${() => setForm(null)} />` : null}
    <${ErrorMessage} error=${state.error} />
    ${state.loading && !state.data ? html`<${Loading} what="connections" />` : null}
    ${state.data?.length === 0 && !form
      ? html`<${EmptyState} title="No connections yet">
          <p>A connection is the admin login the broker uses to create users in a database.</p>
          <button type="button" class="btn btn-primary" onClick=${() => setForm('new')}>Add the first connection</button>
        <//>`
      : null}
    <div class="list">
      ${state.data?.map(
        (conn) => html`<${ConnectionCard} key=${conn.name} conn=${conn}
          onEdit=${() => { setNotice(''); setForm(conn); }}
          onRotate=${() => setConfirm({ kind: 'rotate', name: conn.name })}
          onDelete=${() => setConfirm({ kind: 'delete', name: conn.name })} />`,
      )}
    </div>
    ${confirm?.kind === 'rotate'
      ? html`<${Confirm} title=${`Rotate the root password of ${confirm.name}?`} confirmLabel="Rotate now"
          onClose=${() => setConfirm(null)}
          action=${() => api('PUT', `${mount}rotate-root/${encodePath(confirm.name)}`)}
          onDone=${() => { setNotice(`Root password of ${confirm.name} rotated.`); reload(); }}>
          <p>The broker sets a new random password for the admin user of <strong>${confirm.name}</strong>. Afterwards only the broker knows it: anyone else using that login is locked out.</p>
        <//>`
      : null}
    ${confirm?.kind === 'delete'
      ? html`<${Confirm} title=${`Delete connection ${confirm.name}?`} confirmLabel="Delete"
          onClose=${() => setConfirm(null)}
          action=${() => api('DELETE', `${mount}config/${encodePath(confirm.name)}`)}
          onDone=${() => { setNotice(`Connection ${confirm.name} deleted.`); reload(); }}>
          <p>The broker forgets this connection. It refuses while leases issued through it are still active.</p>
        <//>`
      : null}
  </section>`;
}
