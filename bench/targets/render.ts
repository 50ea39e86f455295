// Fill a role's statement templates for the direct baseline. The bench's own
// names and passwords are [A-Za-z0-9-] only, so plain substitution is safe here
// (the broker itself escapes by quoting context).

export function renderStatement(template: string, values: { name: string; password: string; expiration: Date }): string {
  if (!/^[A-Za-z0-9-]+$/.test(values.name + values.password)) throw new Error('bench names and passwords must be [A-Za-z0-9-]');
  return template
    .replaceAll('{{name}}', values.name)
    .replaceAll('{{username}}', values.name)
    .replaceAll('{{password}}', values.password)
    .replaceAll('{{expiration}}', values.expiration.toISOString());
}
