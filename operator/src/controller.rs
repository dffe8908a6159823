//! Wiring the reconciler to watches: the resources, every kind they own (one
//! watch per kind of [`ChildKind::ALL`], which fills the reconciler's cache before
//! it triggers a reconcile), and the Secrets and ConfigMaps they reference.
//!
//! Children are watched with the operator's label only, and keep what
//! [`ChildKind::content`] says: metadata for most kinds (a `PartialObjectMetadata`
//! watch: whose the object is and its version is all the reconciler reads), the
//! Deployment's readiness besides.
//!
//! Secrets and ConfigMaps are watched as metadata only (`PartialObjectMetadata`):
//! a change of one is all a watch has to notice, and holding every Secret's data
//! of the cluster in memory only to do that cost the operator ~100 MiB on a
//! cluster with 2,000 Secrets of 50 KB. The keys a resource references are read
//! one by one when it reconciles (`references::config_hash`).

use std::sync::Arc;

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::api::{ApiResource, DynamicObject};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Controller};
use kube::runtime::reflector::{ObjectRef, Store, reflector, store::Writer};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::de::DeserializeOwned;

use crate::children::{ChildKind, Content};
use crate::live::{self, ChildWriters};
use crate::reconciler::{Context, error_policy, reconcile};
use crate::references::references;
use crate::resource::CommerceWebhook;

/// Only children carry this label; watching with it keeps the operator from caching
/// every Deployment and Service of the cluster.
const CHILD_SELECTOR: &str = "app.kubernetes.io/managed-by=commerce-webhook-operator";

/// Reconciles in flight at once. Unbounded, a burst of resources holds a reconcile
/// (and its requests and buffers) for each of them and floods the API server;
/// bounded, they queue here and each one finishes sooner. A burst also brings the
/// quick reconciles its children's events trigger, which take slots too: the bound
/// leaves room for them (measured in docs/design/operator.md, scale benchmark).
const RECONCILE_CONCURRENCY: u16 = 64;

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

    fn dynamic_api<
        K: Resource<DynamicType = ApiResource, Scope = kube::core::DynamicResourceScope>,
    >(
        &self,
        client: &Client,
        resource: &ApiResource,
    ) -> Api<K> {
        match self {
            Scope::Cluster => Api::all_with(client.clone(), resource),
            Scope::Namespace(namespace) => {
                Api::namespaced_with(client.clone(), namespace, resource)
            }
        }
    }
}

/// Runs the controller until `shutdown` completes.
/// `writers` are the ones `Context::new` returned with `context`: each child watch
/// fills the reconciler's cache of its kind before it triggers it, so a reconcile
/// never sees a child older than the event that woke it.
pub async fn run(
    context: Arc<Context>,
    mut writers: ChildWriters,
    scope: Scope,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = context.client.clone();
    // The resources' cache, without the field sets of their managed fields: the
    // reconciler never reads them, and they are most of what a resource costs in
    // memory (each field a `serde_json::Value` node) at ten thousand resources.
    let (store, writer) = kube::runtime::reflector::store();
    let resources = reflector(
        writer,
        watcher(
            scope.api::<CommerceWebhook>(&client),
            watcher::Config::default(),
        )
        .modify(|cwh| cwh.managed_fields_mut().clear()),
    )
    .applied_objects();
    let mut controller = Controller::for_stream(resources, store.clone())
        .with_config(controller::Config::default().concurrency(RECONCILE_CONCURRENCY));
    for kind in ChildKind::ALL {
        let resource = kind.api_resource(&context.defaults.pdb);
        let Some(writer) = writers.remove(&kind) else {
            continue;
        };
        let watch = child_watch(kind, writer, &scope, &client, &resource);
        controller = controller.owns_stream_with(watch, resource);
    }
    controller
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

/// The operator's children of one kind, as they change: a watch (metadata only
/// where [`ChildKind::content`] says so) that keeps `writer`'s cache and yields
/// every touched object once it is cached.
pub fn child_watch(
    kind: ChildKind,
    writer: Writer<DynamicObject>,
    scope: &Scope,
    client: &Client,
    resource: &ApiResource,
) -> BoxStream<'static, Result<DynamicObject, watcher::Error>> {
    let config = watcher::Config::default().labels(CHILD_SELECTOR);
    let content = kind.content();
    match content {
        Content::Metadata => {
            let api: Api<PartialObjectMeta<DynamicObject>> = scope.dynamic_api(client, resource);
            let events = watcher(api, config)
                .default_backoff()
                .map_ok(|event| map_event(event, live::from_metadata))
                .modify(move |object| keep_in_place(content, object));
            reflector(writer, events).touched_objects().boxed()
        }
        Content::Readiness => {
            let api: Api<DynamicObject> = scope.dynamic_api(client, resource);
            let events = watcher(api, config)
                .default_backoff()
                .modify(move |object| keep_in_place(content, object));
            reflector(writer, events).touched_objects().boxed()
        }
    }
}

fn keep_in_place(content: Content, object: &mut DynamicObject) {
    let taken = std::mem::replace(
        object,
        DynamicObject {
            types: None,
            metadata: Default::default(),
            data: serde_json::Value::Null,
        },
    );
    *object = live::keep(content, taken);
}

/// A watch event of one object type as one of another.
fn map_event<A, B>(event: watcher::Event<A>, f: impl Fn(A) -> B) -> watcher::Event<B> {
    match event {
        watcher::Event::Apply(object) => watcher::Event::Apply(f(object)),
        watcher::Event::Delete(object) => watcher::Event::Delete(f(object)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitApply(object) => watcher::Event::InitApply(f(object)),
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
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

    /// Every child kind is watched, with the operator's label, and as metadata
    /// only unless its content is needed.
    #[tokio::test]
    async fn every_child_kind_is_watched_with_what_it_needs() {
        let pdb = crate::children::PdbApi::v1beta1();
        for kind in ChildKind::ALL {
            let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
            let client = Client::new(service, "default");
            let resource = kind.api_resource(&pdb);
            let writer = Writer::new(resource.clone());
            let scope = Scope::Namespace("shop".into());
            let mut watch = child_watch(kind, writer, &scope, &client, &resource);
            let watching = tokio::spawn(async move { watch.next().await.map(drop) });
            let (request, _respond) = handle.next_request().await.expect("a list request");
            let uri = request.uri().to_string();
            assert!(
                uri.contains(&format!("/namespaces/shop/{}?", resource.plural)),
                "{kind}: {uri}"
            );
            assert!(
                uri.contains(
                    "labelSelector=app.kubernetes.io%2Fmanaged-by%3Dcommerce-webhook-operator"
                ),
                "{kind}: {uri}"
            );
            let accept = request
                .headers()
                .get("accept")
                .and_then(|value| value.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            assert_eq!(
                accept.contains("as=PartialObjectMetadataList"),
                kind.content() == Content::Metadata,
                "{kind}: {accept:?}"
            );
            watching.abort();
        }
    }
}
