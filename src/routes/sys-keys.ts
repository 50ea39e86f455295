// sys/rotate and sys/key-status: encryption key terms.

import type { Broker } from '../broker.ts';
import type { Route } from '../http/route.ts';
import { object } from '../http/schema.ts';

export function keyRoutes(broker: Broker): Route[] {
  return [
    {
      methods: ['PUT'],
      pattern: 'sys/rotate',
      auth: 'token',
      sudo: true,
      schema: object({}),
      async handler() {
        await broker.seal.rotate();
        broker.logger.info({ term: broker.seal.keys.term }, 'encryption key rotated');
        return undefined;
      },
    },
    {
      methods: ['GET'],
      pattern: 'sys/key-status',
      auth: 'token',
      async handler() {
        const keys = broker.seal.keys;
        return { data: { term: keys.term, install_time: keys.installTime } };
      },
    },
  ];
}
