//! `berth version`: the client's version, berthd's version and revision, and its UUID.

use serde::Serialize;

use crate::client::Client;
use crate::cmd::stdout_err;
use crate::error::Result;
use crate::{output, Opts};

#[derive(Serialize)]
struct ClientVersion {
    version: &'static str,
}

#[derive(Serialize)]
struct ServerVersion {
    version: String,
    revision: String,
    uuid: String,
}

#[derive(Serialize)]
struct Versions {
    client: ClientVersion,
    server: ServerVersion,
}

/// Runs `berth version`.
pub async fn run(client: &Client, opts: Opts) -> Result<()> {
    let v = client
        .version()
        .version(client.request(())?)
        .await
        .map_err(|s| crate::error::from_status(&s, client.global_ctx("version")))?
        .into_inner();
    let uuid = client
        .introspection()
        .server(client.request(())?)
        .await
        .map_err(|s| crate::error::from_status(&s, client.global_ctx("server introspection")))?
        .into_inner()
        .uuid;
    let out = Versions {
        client: ClientVersion {
            version: env!("CARGO_PKG_VERSION"),
        },
        server: ServerVersion {
            version: v.version,
            revision: v.revision,
            uuid,
        },
    };
    if opts.json {
        return output::json(&out).map_err(stdout_err);
    }
    output::text(&format!(
        "Client:\n  Version:  {}\n\nServer:\n  Version:  {}\n  Revision: {}\n  UUID:     {}\n",
        out.client.version, out.server.version, out.server.revision, out.server.uuid
    ))
    .map_err(stdout_err)
}
