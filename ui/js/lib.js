// The front-end library in one place: Preact components written with htm
// tagged templates (no JSX, so no build step).
import { h, render } from 'preact';
import htm from 'htm';

export const html = htm.bind(h);
export { render };
export { useEffect, useLayoutEffect, useReducer, useRef, useState } from 'preact/hooks';
