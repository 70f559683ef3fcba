// A real OpenID provider for the tests: oidc-provider (a certified implementation) on loopback.
//
//   node provider.mjs SETTINGS.json
//
// SETTINGS: {"port": N, "clients": [oidc-provider client metadata...], "accounts": {"login":
// {claims}}, "shortIdTokenClients": ["client_id"...]}. The signing key is made at start with a
// fresh kid, so a restart is a key rotation. The built-in development login form takes any
// password for a login named in "accounts". Prints "ready <issuer> <kid>" once listening.
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';

import Provider from 'oidc-provider';

const settings = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const issuer = `http://127.0.0.1:${settings.port}`;
const kid = randomUUID();
const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
const key = { ...privateKey.export({ format: 'jwk' }), kid, alg: 'RS256', use: 'sig' };
const short = new Set(settings.shortIdTokenClients || []);

const provider = new Provider(issuer, {
  clients: settings.clients,
  jwks: { keys: [key] },
  cookies: { keys: [randomUUID()] },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name'],
    groups: ['groups'],
  },
  scopes: ['openid', 'email', 'profile', 'groups'],
  pkce: { methods: ['S256'], required: () => true },
  features: { devInteractions: { enabled: true } },
  ttl: {
    IdToken: (ctx, token, client) => (short.has(client.clientId) ? 1 : 3600),
  },
  async findAccount(ctx, id) {
    const claims = settings.accounts[id];
    if (!claims) return undefined;
    return { accountId: id, claims: async () => ({ sub: id, ...claims }) };
  },
});

provider.listen(settings.port, '127.0.0.1', () => {
  process.stdout.write(`ready ${issuer} ${kid}\n`);
});
