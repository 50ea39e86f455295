import type { Route } from '../../http/route.ts';
import type { AuthMethod, MethodContext } from '../method.ts';
export class KubernetesMethod implements AuthMethod {
  constructor(private readonly ctx: MethodContext) {}
  routes(): Route[] {
    void this.ctx;
    return [];
  }
}
