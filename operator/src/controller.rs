//! Wiring the reconciler to watches: the resources, what they own, and the Secrets
//! and ConfigMaps they reference.
//!
//! Secrets and ConfigMaps are watched as metadata only (`PartialObjectMetadata`):
//! a change of one is all a watch has to notice, and holding every Secret's data
//! of the cluster in memory only to do that cost the operator ~100 MiB on a
//! cluster with 2,000 Secrets of 50 KB. The keys a resource references are read
//! one by one when it reconciles (`references::config_hash`).

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Secret, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{ObjectRef, Store, reflector, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::live::ChildWriters;
use crate::reconciler::{Context, error_policy, reconcile};
use crate::references::references;
use crate::resource::CommerceWebhook;

/// Only children carry this label; watching with it keeps the operator from caching
/// every Deployment and Service of the cluster.
const CHILD_SELECTOR: &str = "app.kubernetes.io/managed-by=commerce-webhook-operator";

/// Reconciles in flight at once. Unbounded, a burst of resources holds a reconcile
/// (and its requests and buffers) for each of them and floods the API server;
/// bounded, they queue here and each one finishes sooner.
const RECONCILE_CONCURRENCY: u16 = 32;

/// Which namespaces the operator manages.
#[derive(Debug, Clone)]
pub enum Scope {
    Cluster,
    Namespace(String),
}

impl Scope {
    fn api<K>(&self, client: &Client) -> Api<K>
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>,
    {
        match self {
            Scope::Cluster => Api::all(client.clone()),
            Scope::Namespace(namespace) => Api::namespaced(client.clone(), namespace),
        }
    }
}

/// Runs the controller until `shutdown` completes.
/// `writers` are the ones `Context::new` returned with `context`: the Deployment and
/// Service watches fill the reconciler's caches before they trigger it, so a
/// reconcile never sees a child older than the event that woke it.
pub async fn run(
    context: Arc<Context>,
    writers: ChildWriters,
    scope: Scope,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = context.client.clone();
    let children = watcher::Config::default().labels(CHILD_SELECTOR);
    let controller = Controller::new(
        scope.api::<CommerceWebhook>(&client),
        watcher::Config::default(),
    )
    .with_config(controller::Config::default().concurrency(RECONCILE_CONCURRENCY));
    let store = controller.store();
    let deployments = cached_watch(
        writers.deployments,
        scope.api::<Deployment>(&client),
        children.clone(),
    );
    let services = cached_watch(
        writers.services,
        scope.api::<Service>(&client),
        children.clone(),
    );
    controller
        .owns_stream(deployments)
        .owns_stream(services)
        .owns(scope.api::<Ingress>(&client), children)
        .watches_stream(metadata_watch(scope.api::<PartialObjectMeta<Secret>>(&client)), referencing(store.clone()))
        .watches_stream(metadata_watch(scope.api::<PartialObjectMeta<ConfigMap>>(&client)), referencing(store))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, context)
        .for_each(|result| async move {
            match result {
                Ok((object, _)) => tracing::debug!(name = %object.name, namespace = ?object.namespace, "reconciled"),
                // Reconcile failures are logged by the error policy; anything else
                // (a watch that cannot list, for example) is logged here.
                Err(kube::runtime::controller::Error::ReconcilerFailed(..)) => {}
                Err(error) => tracing::warn!(%error, "controller error"),
            }
        })
        .await;
}

/// A watch that keeps `writer`'s cache (without managed fields, which only cost
/// memory here) and yields every touched object once it is cached.
fn cached_watch<K>(
    writer: Writer<K>,
    api: Api<K>,
    config: watcher::Config,
) -> impl futures::Stream<Item = Result<K, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let stream = watcher(api, config)
        .default_backoff()
        .modify(|object: &mut K| {
            object.meta_mut().managed_fields = None;
        });
    reflector(writer, stream).touched_objects()
}

/// The metadata of every object `api` lists, as it changes: an
/// `Api<PartialObjectMeta<_>>` asks for metadata only, so no data is received and
/// nothing of the objects' contents is ever held here.
fn metadata_watch<K>(
    api: Api<PartialObjectMeta<K>>,
) -> impl futures::Stream<Item = Result<PartialObjectMeta<K>, watcher::Error>> + Send + 'static
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher(api, watcher::Config::default())
        .default_backoff()
        .modify(|meta: &mut PartialObjectMeta<K>| meta.metadata.managed_fields = None)
        .touched_objects()
}

/// Maps a changed Secret or ConfigMap (its metadata) to the resources in its
/// namespace that reference it, so that they re-check it and roll their pods.
fn referencing<K>(
    store: Store<CommerceWebhook>,
) -> impl Fn(PartialObjectMeta<K>) -> Vec<ObjectRef<CommerceWebhook>> + Send + Sync + 'static
where
    K: Resource<DynamicType = ()>,
{
    move |object: PartialObjectMeta<K>| {
        let kind = K::kind(&());
        let name = object.name_any();
        let namespace = object.namespace();
        store
            .state()
            .iter()
            .filter(|cwh| cwh.namespace() == namespace)
            .filter(|cwh| {
                references(cwh)
                    .iter()
                    .any(|reference| reference.kind() == kind && reference.name() == name)
            })
            .map(|cwh| ObjectRef::from_obj(&**cwh))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use http::{Request, Response};
    use kube::client::Body;

    use super::*;

    /// The reference watches ask the API server for metadata only: the data of
    /// every Secret and ConfigMap in the cluster never reaches the operator.
    #[tokio::test]
    async fn secrets_and_config_maps_are_watched_without_their_data() {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let secrets = metadata_watch(Scope::Cluster.api::<PartialObjectMeta<Secret>>(&client));
        let watching = tokio::spawn(async move {
            futures::pin_mut!(secrets);
            secrets.next().await.map(drop)
        });
        let (request, _respond) = handle.next_request().await.expect("a list request");
        let accept = request
            .headers()
            .get("accept")
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        assert!(
            accept.contains("as=PartialObjectMetadataList"),
            "{} asks for {accept:?}",
            request.uri()
        );
        assert!(
            request.uri().path().ends_with("/secrets"),
            "{}",
            request.uri()
        );
        watching.abort();
    }
}
