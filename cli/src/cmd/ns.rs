//! `berth ns`: list, create, remove and label namespaces.

use std::collections::BTreeMap;

use berth_api::services::namespaces::v1::{
    CreateNamespaceRequest, DeleteNamespaceRequest, ListNamespacesRequest, Namespace,
    UpdateNamespaceRequest,
};
use clap::Subcommand;
use serde::Serialize;

use crate::client::Client;
use crate::cmd::{label_paths, remove_each, stdout_err};
use crate::error::{from_status, Error, Result};
use crate::output::{self, Table};
use crate::{parse, Opts};

/// `berth ns …`
#[derive(Debug, Subcommand)]
pub enum NsCommand {
    /// List namespaces and their labels
    #[command(visible_alias = "list")]
    Ls,
    /// Create a namespace, optionally with labels
    Create {
        /// Name: letters and digits, separated by single '.', '_' or '-'
        name: String,
        /// Labels as key=value
        #[arg(value_name = "KEY=VALUE")]
        labels: Vec<String>,
    },
    /// Remove empty namespaces
    #[command(visible_aliases = ["remove", "delete"])]
    Rm {
        /// Namespaces to remove
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Set labels on a namespace (key= removes a label)
    Label {
        /// The namespace
        name: String,
        /// Labels as key=value; an empty value removes the label
        #[arg(required = true, value_name = "KEY=VALUE")]
        labels: Vec<String>,
    },
}

#[derive(Serialize)]
struct NsView {
    name: String,
    labels: BTreeMap<String, String>,
}

fn view(ns: &Namespace) -> NsView {
    NsView {
        name: ns.name.clone(),
        labels: output::sorted(&ns.labels),
    }
}

/// Runs a `berth ns` command.
pub async fn run(client: &Client, opts: Opts, cmd: NsCommand) -> Result<()> {
    let err = |what: &str, s: tonic::Status| from_status(&s, client.global_ctx(what));
    match cmd {
        NsCommand::Ls => {
            let mut list = client
                .namespaces()
                .list(client.request(ListNamespacesRequest::default())?)
                .await
                .map_err(|s| err("namespaces", s))?
                .into_inner()
                .namespaces;
            list.sort_by(|a, b| a.name.cmp(&b.name));
            if opts.json {
                let v: Vec<NsView> = list.iter().map(view).collect();
                return output::json(&v).map_err(stdout_err);
            }
            let mut t = Table::new(&["NAME", "LABELS"]);
            for ns in &list {
                t.row(vec![ns.name.clone(), output::labels_cell(&ns.labels)]);
            }
            t.print().map_err(stdout_err)
        }
        NsCommand::Create { name, labels } => {
            let labels = parse::labels(&labels).map_err(Error::usage)?;
            let what = format!("namespace {name:?}");
            let ns = client
                .namespaces()
                .create(client.request(CreateNamespaceRequest {
                    namespace: Some(Namespace {
                        name: name.clone(),
                        labels: labels.into_iter().collect(),
                    }),
                })?)
                .await
                .map_err(|s| err(&what, s))?
                .into_inner()
                .namespace
                .unwrap_or(Namespace {
                    name,
                    ..Default::default()
                });
            if opts.json {
                output::json(&view(&ns))
            } else {
                output::text(&format!("{}\n", ns.name))
            }
            .map_err(stdout_err)
        }
        NsCommand::Rm { names } => {
            remove_each(opts, &names, "namespaces", |name| async move {
                client
                    .namespaces()
                    .delete(client.request(DeleteNamespaceRequest {
                        name: name.to_string(),
                    })?)
                    .await
                    .map_err(|s| err(&format!("namespace {name:?}"), s))?;
                Ok(name)
            })
            .await
        }
        NsCommand::Label { name, labels } => {
            let labels = parse::labels(&labels).map_err(Error::usage)?;
            let what = format!("namespace {name:?}");
            let paths = label_paths(&labels);
            let ns = client
                .namespaces()
                .update(client.request(UpdateNamespaceRequest {
                    namespace: Some(Namespace {
                        name: name.clone(),
                        labels: labels.into_iter().collect(),
                    }),
                    update_mask: Some(prost_types::FieldMask { paths }),
                })?)
                .await
                .map_err(|s| err(&what, s))?
                .into_inner()
                .namespace
                .unwrap_or_default();
            if opts.json {
                return output::json(&view(&ns)).map_err(stdout_err);
            }
            let mut t = Table::new(&["NAME", "LABELS"]);
            t.row(vec![ns.name.clone(), output::labels_cell(&ns.labels)]);
            t.print().map_err(stdout_err)
        }
    }
}
