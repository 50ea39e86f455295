// Renders the agent's templates to their destinations (atomic replace, mode
// 0600) and runs each template's command when its file changed. A file is
// only written when its content differs from what is there.

import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import type { TemplateConfig } from './agent-config.ts';
import { writeFileAtomic } from './atomic-file.ts';
import { renderTemplate, type SecretView } from './template.ts';

const digest = (text: string | Buffer): string => createHash('sha256').update(text).digest('hex');

export class TemplateRunner {
  /** sha256 of each destination's content as last written or found. */
  private readonly written = new Map<string, string>();
  renders = 0;
  commandRuns = 0;
  /** Per destination: the last render or command error (cleared on success). */
  readonly errors = new Map<string, string>();

  constructor(
    private readonly templates: TemplateConfig[],
    private readonly log: Logger,
  ) {}

  /**
   * Render every template (or only those reading `changedPath`); returns
   * the number of files whose content changed. Render errors leave the file as it was.
   */
  async render(lookup: (path: string) => SecretView | undefined, changedPath?: string): Promise<number> {
    let changed = 0;
    for (const t of this.templates) {
      if (changedPath !== undefined && !t.template.secrets.includes(changedPath)) continue;
      let text: string;
      try {
        text = renderTemplate(t.template, lookup);
      } catch (err) {
        this.errors.set(t.destination, (err as Error).message);
        this.log.warn({ destination: t.destination, err: (err as Error).message }, 'template not rendered');
        continue;
      }
      const hash = digest(text);
      if (!this.written.has(t.destination)) {
        const existing = await readFile(t.destination).catch(() => undefined);
        if (existing) this.written.set(t.destination, digest(existing));
      }
      if (this.written.get(t.destination) === hash) {
        this.errors.delete(t.destination);
        continue;
      }
      try {
        await writeFileAtomic(t.destination, text, 0o600);
      } catch (err) {
        this.errors.set(t.destination, (err as Error).message);
        this.log.error({ destination: t.destination, err: (err as Error).message }, 'cannot write template destination');
        continue;
      }
      this.written.set(t.destination, hash);
      this.errors.delete(t.destination);
      this.renders++;
      changed++;
      this.log.info({ destination: t.destination }, 'template rendered');
      if (t.command) await this.runCommand(t);
    }
    return changed;
  }

  private runCommand(t: TemplateConfig): Promise<void> {
    const [file, args] = typeof t.command === 'string' ? ['/bin/sh', ['-c', t.command]] : [t.command![0]!, t.command!.slice(1)];
    this.commandRuns++;
    return new Promise((resolve) => {
      const child = spawn(file, args, { stdio: ['ignore', 'inherit', 'inherit'], timeout: t.commandTimeoutMs });
      child.once('error', (err) => {
        this.errors.set(t.destination, `command: ${err.message}`);
        resolve();
      });
      child.once('exit', (code, signal) => {
        if (code !== 0) {
          this.errors.set(t.destination, `command exited with ${code ?? signal}`);
          this.log.warn({ destination: t.destination, code, signal }, 'template command failed');
        }
        resolve();
      });
    });
  }
}
