// The shell: hash routing (#/connections, …), navigation, the signed-in
// identity, the database mount in use and the sealed banner. Each page is
// its own module under pages/.

import { api, session } from './api.js';
import { html, render, useEffect, useState } from './lib.js';
import { SignIn } from './pages/sign-in.js';
import { Status } from './pages/status.js';
import { Connections } from './pages/connections.js';
import { Roles } from './pages/roles.js';
import { Leases } from './pages/leases.js';
import { StaticRoles } from './pages/static-roles.js';
import { Audit } from './pages/audit.js';

const PAGES = [
  { path: 'status', label: 'Status', component: Status, public: true },
  { path: 'connections', label: 'Connections', component: Connections },
  { path: 'roles', label: 'Roles', component: Roles },
  { path: 'leases', label: 'Leases', component: Leases },
  { path: 'static-roles', label: 'Static roles', component: StaticRoles },
  { path: 'audit', label: 'Audit devices', component: Audit },
];
const MOUNT_KEY = 'dbroker.mount';

const currentPath = () => location.hash.replace(/^#\/?/, '').split('?')[0] || 'connections';

function useRoute() {
  const [path, setPath] = useState(currentPath());
  useEffect(() => {
    const on = () => setPath(currentPath());
    addEventListener('hashchange', on);
    return () => removeEventListener('hashchange', on);
  }, []);
  return path;
}

/** The database mounts (type "database"); falls back to "database/" when sys/mounts is not readable. */
async function databaseMounts() {
  try {
    const body = await api('GET', 'sys/mounts');
    const mounts = Object.entries(body.data ?? {}).filter(([, m]) => m?.type === 'database').map(([p]) => p);
    return mounts.length > 0 ? mounts.sort() : ['database/'];
  } catch {
    return ['database/'];
  }
}

function App() {
  const path = useRoute();
  const [token, setToken] = useState(session.token);
  const [identity, setIdentity] = useState(null);
  const [mounts, setMounts] = useState(['database/']);
  const [mount, setMount] = useState(sessionStorage.getItem(MOUNT_KEY) ?? 'database/');
  const [sealed, setSealed] = useState(false);

  useEffect(() => {
    const check = () =>
      api('GET', 'sys/seal-status', undefined, { auth: false }).then(
        (s) => setSealed(s.sealed),
        () => undefined,
      );
    check();
    const on = () => check();
    addEventListener('dbroker:sealed', on);
    return () => removeEventListener('dbroker:sealed', on);
  }, [path]);

  useEffect(() => {
    if (!token || sealed) return;
    api('GET', 'auth/token/lookup-self').then(
      (r) => setIdentity(r.data),
      (err) => {
        if (err.status === 403) signOut();
      },
    );
    databaseMounts().then((m) => {
      setMounts(m);
      if (!m.includes(mount)) chooseMount(m[0]);
    });
  }, [token, sealed]);

  const chooseMount = (m) => {
    sessionStorage.setItem(MOUNT_KEY, m);
    setMount(m);
  };
  const signIn = (t) => {
    session.signIn(t);
    setToken(t);
    if (currentPath() === 'sign-in') location.hash = '#/connections';
  };
  const signOut = () => {
    session.signOut();
    setToken('');
    setIdentity(null);
  };

  const page = PAGES.find((p) => p.path === path) ?? PAGES[1];
  const showSignIn = !token && !page.public;
  const Page = page.component;

  return html`
    <a class="skip-link" href="#main">Skip to content</a>
    <header class="topbar">
      <a class="brand" href="#/connections"><img src="/ui/favicon.svg" alt="" width="24" height="24" /> dbroker</a>
      ${token
        ? html`<nav aria-label="Main">
            <ul>
              ${PAGES.map(
                (p) => html`<li><a href=${`#/${p.path}`} aria-current=${p.path === page.path ? 'page' : undefined}>${p.label}</a></li>`,
              )}
            </ul>
          </nav>
          <div class="session">
            ${mounts.length > 1
              ? html`<label class="mount-select">Mount
                  <select value=${mount} onChange=${(e) => chooseMount(e.currentTarget.value)}>
                    ${mounts.map((m) => html`<option value=${m}>${m}</option>`)}
                  </select></label>`
              : null}
            ${identity ? html`<span class="who" title=${`policies: ${(identity.policies ?? []).join(', ')}`}>${identity.display_name || 'token'}</span>` : null}
            <button type="button" class="btn btn-small" onClick=${signOut}>Sign out</button>
          </div>`
        : html`<nav aria-label="Main"><ul>
            <li><a href="#/connections" aria-current=${page.path !== 'status' ? 'page' : undefined}>Sign in</a></li>
            <li><a href="#/status" aria-current=${page.path === 'status' ? 'page' : undefined}>Status</a></li>
          </ul></nav>`}
    </header>
    ${sealed && page.path !== 'status'
      ? html`<div class="banner" role="status">The broker is sealed: nothing can be read or changed until it is unsealed. <a href="#/status">Unseal it</a>.</div>`
      : null}
    <main id="main">
      ${showSignIn ? html`<${SignIn} onSignIn=${signIn} sealed=${sealed} />` : html`<${Page} key=${`${page.path}:${mount}`} mount=${mount} signedIn=${!!token} onSealChange=${setSealed} />`}
    </main>
  `;
}

render(html`<${App} />`, document.getElementById('app'));
