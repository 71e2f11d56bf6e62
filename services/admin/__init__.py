"""Key administration: the key registry's only writer (`registry_writer`), roles, admin
credentials, and the admin service behind the HTTP API, the `keys`/`providers`/`admin` CLI and the
local tools (`keywarden scan --revoke`, the demo): every change authorised and audited."""
