// Entries sealed by the barrier with their path as associated data, so a
// ciphertext cannot be moved to another path.

import type { Barrier } from '../seal/barrier.ts';
import type { Storage } from './storage.ts';

export async function readSealedEntry<T>(storage: Storage, keys: Barrier, path: string): Promise<T | undefined> {
  const sealed = await storage.getEntry(path);
  return sealed ? keys.decryptJSON<T>(path, sealed) : undefined;
}

export async function writeSealedEntry(storage: Storage, keys: Barrier, path: string, value: unknown): Promise<void> {
  await storage.putEntry(path, keys.encryptJSON(path, value));
}
