/**
 * `portcullis certs`: a small private CA for the controller ↔ agent mTLS.
 *   portcullis certs init  --dir DIR [--cn NAME] [--days N] [--force]
 *   portcullis certs issue --dir DIR --name NAME [--server] [--san SAN]... [--days N] [--force]
 * Uses the `openssl` binary (src/tls/pki.ts); keys are written with mode 0600.
 */
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { EXIT_INPUT_ERROR, EXIT_OK, type CliIO, type Command } from '../command.js';
import { UsageError } from '../../usage-error.js';
import { PkiError, initCa, issueCert } from '../../tls/pki.js';

const help = `Usage:
  portcullis certs init  --dir DIR [--cn NAME] [--days N] [--force]
  portcullis certs issue --dir DIR --name NAME [--server] [--san SAN]... [--days N] [--force]

Makes the certificates of the controller <-> agent mTLS with the openssl binary.

  init    Creates a CA in DIR: ca.key (mode 0600) and ca.crt. Give ca.crt to the
          controller and to every agent; keep ca.key off the hosts.
  issue   Signs DIR/NAME.crt with a new key DIR/NAME.key (mode 0600).
          Without --server: an agent certificate; NAME must be the host id the
          agent says Hello with (the controller checks it against the certificate).
          With --server: a controller certificate; add every name and address
          agents connect to with --san (DNS:name, IP:address, or a bare value).
          It is also a client certificate (extendedKeyUsage serverAuth, clientAuth):
          a replica presents it to its peers to read their flows. A controller
          certificate made by an earlier release (serverAuth only) serves agents
          but cannot query peers: issue it again.

Options:
  --dir DIR     PKI directory (created if missing)
  --name NAME   host id or controller name; also the file name
  --server      controller certificate (TLS server, and client of peer replicas)
  --san SAN     extra subjectAltName, repeatable
  --cn NAME     CA common name (default "Portcullis CA")
  --days N      validity (default 3650 for the CA, 825 for certificates)
  --force       replace existing files of that name
`;

function parseDays(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const days = Number(value);
  if (!Number.isInteger(days) || days < 1 || days > 36_500) throw new UsageError(`--days must be a whole number of days, got '${value}'`);
  return days;
}

async function ensureDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
}

export const certsCommand: Command = {
  name: 'certs',
  help,
  async run(args: readonly string[], io: CliIO): Promise<number> {
    const [sub, ...rest] = args;
    if (sub !== 'init' && sub !== 'issue') throw new UsageError(sub ? `unknown subcommand '${sub}'` : 'missing subcommand (init or issue)');
    let values;
    try {
      ({ values } = parseArgs({
        args: [...rest],
        options: {
          dir: { type: 'string' },
          name: { type: 'string' },
          server: { type: 'boolean', default: false },
          san: { type: 'string', multiple: true, default: [] },
          cn: { type: 'string' },
          days: { type: 'string' },
          force: { type: 'boolean', default: false },
        },
        strict: true,
        allowPositionals: false,
      }));
    } catch (err) {
      throw new UsageError(err instanceof Error ? err.message : String(err));
    }
    if (!values.dir) throw new UsageError('--dir is required');
    const dir = path.resolve(io.cwd, values.dir);
    const days = parseDays(values.days);
    try {
      if (sub === 'init') {
        if (values.name !== undefined || values.server || (values.san ?? []).length > 0) {
          throw new UsageError('--name, --server and --san belong to `certs issue`');
        }
        await ensureDir(dir);
        const files = await initCa(dir, { commonName: values.cn, days, force: values.force });
        io.stdout(`CA written: ${files.certFile} (key ${files.keyFile}, mode 0600)\n`);
        return EXIT_OK;
      }
      if (!values.name) throw new UsageError('--name is required');
      if (values.cn !== undefined) throw new UsageError('--cn belongs to `certs init`');
      await ensureDir(dir);
      const files = await issueCert(dir, { name: values.name, server: values.server, sans: values.san, days, force: values.force });
      const role = values.server ? 'controller' : 'agent';
      io.stdout(`${role} certificate written: ${files.certFile} (key ${files.keyFile}, mode 0600)\n`);
      return EXIT_OK;
    } catch (err) {
      if (err instanceof PkiError) {
        io.stderr(`portcullis certs ${sub}: ${err.message}\n`);
        return EXIT_INPUT_ERROR;
      }
      throw err;
    }
  },
};
