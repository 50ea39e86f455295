// A small keep-alive HTTP client for load: node:http with one pooled socket
// per concurrent worker, so the broker and the fastify baseline are driven
// by the same code with the same cost on the client side (fetch costs more
// CPU per request on this shared machine).

import http from 'node:http';

export interface HttpResult {
  status: number;
  text: string;
}

export class HttpClient {
  private readonly agent: http.Agent;
  private readonly url: URL;

  /** `base`: e.g. http://127.0.0.1:8200; `sockets`: at most this many connections (one per worker). */
  constructor(base: string, sockets: number) {
    this.url = new URL(base);
    this.agent = new http.Agent({ keepAlive: true, maxSockets: sockets, maxFreeSockets: sockets });
  }

  request(method: string, path: string, opts: { token?: string; body?: unknown } = {}): Promise<HttpResult> {
    const body = opts.body === undefined ? undefined : JSON.stringify(opts.body);
    const headers: Record<string, string> = {};
    if (opts.token) headers['x-vault-token'] = opts.token;
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      headers['content-length'] = String(Buffer.byteLength(body));
    }
    return new Promise((resolve, reject) => {
      const req = http.request({ host: this.url.hostname, port: this.url.port, method, path, headers, agent: this.agent }, (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text: Buffer.concat(parts).toString('utf8') }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end(body);
    });
  }

  /** Like `request`, but throws `<method> <path> answered <status>: <text>` unless the status is `ok`. */
  async expect(ok: number, method: string, path: string, opts: { token?: string; body?: unknown } = {}): Promise<HttpResult> {
    const res = await this.request(method, path, opts);
    if (res.status !== ok) throw new Error(`${method} ${path.replace(/\?.*/, '')} answered ${res.status}: ${res.text.slice(0, 200)}`);
    return res;
  }

  close(): void {
    this.agent.destroy();
  }
}
