// Small shared pieces: error and notice regions, empty states, the
// confirmation dialog, copy buttons, time and duration formatting, and a
// data-loading hook.

import { html, useEffect, useLayoutEffect, useReducer, useRef, useState } from './lib.js';

/** Errors are announced (aria-live) and shown where the action was. */
export function ErrorMessage({ error, id }) {
  return html`<div class="live" aria-live="assertive" id=${id}>
    ${error ? html`<p class="alert alert-error" role="alert">${String(error.message ?? error)}</p>` : null}
  </div>`;
}

/** A polite status line for successes ("Root credentials rotated"). */
export function Notice({ text }) {
  return html`<div class="live" aria-live="polite">${text ? html`<p class="alert alert-ok" role="status">${text}</p>` : null}</div>`;
}

export function EmptyState({ title, children }) {
  return html`<div class="empty" data-testid="empty-state"><p class="empty-title">${title}</p><div class="empty-body">${children}</div></div>`;
}

export function Loading({ what }) {
  return html`<p class="muted" role="status">Loading ${what}…</p>`;
}

/** A labelled form field; `hint` is linked with aria-describedby, `error` marks it invalid. */
export function Field({ id, label, hint, error, children }) {
  return html`<div class=${`field${error ? ' field-invalid' : ''}`}>
    <label for=${id}>${label}</label>
    ${children}
    ${hint ? html`<p class="hint" id=${`${id}-hint`}>${hint}</p>` : null}
    ${error ? html`<p class="field-error" id=${`${id}-error`}>${error}</p>` : null}
  </div>`;
}

/** aria-describedby for a Field's control. */
export const describedBy = (id, hint, error) => [hint ? `${id}-hint` : '', error ? `${id}-error` : ''].filter(Boolean).join(' ') || undefined;

/**
 * A modal <dialog> (native focus trap, Escape closes). `onClose` runs on
 * Escape, and whenever the browser closes the dialog by itself; the parent
 * then unmounts it (the Confirm's cancel button calls `onClose` directly).
 *
 * The listeners are props on the element, so they exist from the moment the
 * dialog does. They used to be added in an effect, which runs after paint: an
 * Escape in that window (12 ms after opening, in CI) closed the dialog with
 * no listener, the parent still held it open, and the next click on its
 * opener changed nothing.
 */
export function Dialog({ title, onClose, children, wide }) {
  const ref = useRef(null);
  const unmounting = useRef(false);
  // A layout effect: the opener is read in the same task as the render that
  // added the dialog, before anything else can move the focus.
  useLayoutEffect(() => {
    const d = ref.current;
    const opener = document.activeElement;
    d.showModal();
    return () => {
      // Our own close below fires 'close' later: not a close to report.
      unmounting.current = true;
      if (d.open) d.close();
      // Back to the control that opened it (when that is still on the page).
      if (opener instanceof HTMLElement && opener.isConnected) opener.focus();
    };
  }, []);
  const cancel = (e) => {
    e.preventDefault();
    onClose();
  };
  // A close nobody asked for through state: a cancel the browser would not let
  // us prevent (Chromium's close-watcher rule for repeated Escapes), or script.
  const closed = () => {
    if (!unmounting.current) onClose();
  };
  return html`<dialog ref=${ref} class=${wide ? 'wide' : ''} aria-labelledby="dialog-title" onCancel=${cancel} onClose=${closed}>
    <h2 id="dialog-title">${title}</h2>
    ${children}
  </dialog>`;
}

/**
 * Ask before a destructive action. `action` is async; its error is shown in
 * the dialog, its success closes it and calls `onDone`.
 */
export function Confirm({ title, children, confirmLabel, action, onClose, onDone }) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  const run = async () => {
    setBusy(true);
    setError(null);
    try {
      const result = await action();
      onClose();
      onDone?.(result);
    } catch (err) {
      setError(err);
      setBusy(false);
    }
  };
  return html`<${Dialog} title=${title} onClose=${onClose}>
    <div class="dialog-body">${children}</div>
    <${ErrorMessage} error=${error} />
    <div class="actions">
      <button type="button" class="btn" onClick=${onClose} autofocus>Cancel</button>
      <button type="button" class="btn btn-danger" onClick=${run} disabled=${busy}>${busy ? 'Working…' : confirmLabel}</button>
    </div>
  <//>`;
}

/** Copy `value` to the clipboard (falls back to a selection copy outside secure contexts). */
export function CopyButton({ value, label }) {
  const [copied, setCopied] = useState(false);
  const copy = async () => {
    try {
      await navigator.clipboard.writeText(value);
    } catch {
      const area = document.createElement('textarea');
      area.value = value;
      document.body.append(area);
      area.select();
      document.execCommand('copy');
      area.remove();
    }
    setCopied(true);
    setTimeout(() => setCopied(false), 2000);
  };
  return html`<button type="button" class="btn btn-small" onClick=${copy} aria-label=${`Copy ${label}`}>
    ${copied ? 'Copied' : 'Copy'}
  </button><span class="visually-hidden" aria-live="polite">${copied ? `${label} copied` : ''}</span>`;
}

/** Seconds as "1h 5m 3s" (0 → "0s"), at most `units` units ("23h 59m" with 2). */
export function formatDuration(seconds, units = 4) {
  let s = Math.max(0, Math.round(seconds));
  if (s === 0) return '0s';
  const parts = [];
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]]) {
    if (s >= size) {
      parts.push(`${Math.floor(s / size)}${unit}`);
      s %= size;
    }
  }
  return parts.slice(0, units).join(' ');
}

/** Seconds as a Go duration the API accepts ("1h30m"; 0 → ""). */
export function goDuration(seconds) {
  return seconds ? formatDuration(seconds).replaceAll(' ', '') : '';
}

/** "3 min ago" / "in 2 h" beside an exact <time>. */
export function Time({ iso, empty = 'never' }) {
  if (!iso) return html`<span class="muted">${empty}</span>`;
  const d = new Date(iso);
  const diff = Math.round((d.getTime() - Date.now()) / 1000);
  const rel = Math.abs(diff) < 5 ? 'just now' : diff > 0 ? `in ${formatDuration(diff, 2)}` : `${formatDuration(-diff, 2)} ago`;
  return html`<time datetime=${iso} title=${iso}>${d.toLocaleString()} <span class="muted">(${rel})</span></time>`;
}

/** The current time, re-rendering every second. */
export function useNow() {
  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, []);
  return now;
}

/** Time left until `until` (ms), ticking each second. */
export function Countdown({ until }) {
  const now = useNow();
  const left = Math.max(0, Math.round((until - now) / 1000));
  return html`<span class=${left === 0 ? 'badge badge-danger' : left < 60 ? 'badge badge-warn' : 'badge'} data-ttl=${left}>${left === 0 ? 'expired' : formatDuration(left)}</span>`;
}

/**
 * Run `load` (async) when `deps` change or `reload()` is called.
 * Returns [{ loading, data, error }, reload].
 */
export function useLoad(load, deps) {
  const [state, setState] = useState({ loading: true, data: undefined, error: null });
  const [tick, reload] = useReducer((n) => n + 1, 0);
  useEffect(() => {
    let live = true;
    setState((s) => ({ ...s, loading: true }));
    load().then(
      (data) => live && setState({ loading: false, data, error: null }),
      (error) => live && setState({ loading: false, data: undefined, error }),
    );
    return () => {
      live = false;
    };
  }, [...deps, tick]);
  return [state, reload];
}

/** Page heading that takes focus when the page opens (keyboard and screen-reader users land on it). */
export function PageHeader({ title, children }) {
  const ref = useRef(null);
  useEffect(() => ref.current?.focus(), []);
  return html`<div class="page-header">
    <h1 tabindex="-1" ref=${ref}>${title}</h1>
    <div class="page-actions">${children}</div>
  </div>`;
}
