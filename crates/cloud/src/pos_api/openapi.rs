//! `GET /openapi.json`: the OpenAPI 3 document of the POS API, generated from the handlers'
//! `#[utoipa::path]` annotations and the bodies' schemas, so it cannot drift from the code.
//! The human-readable page is `docs/pos-api.md`.

use super::ApiState;
use axum::extract::State;
use axum::Json;
use protocol::pos_api::{ErrorBody, PairingResponse, TransactionEnvelope, TransactionStatus};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{OpenApi as Document, Ref, Required, Server};
use utoipa::OpenApi;

/// The document, as derived from the code.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "eftcloud POS API",
        description = "The SmartConnect POS API as eftcloud serves it, and eftcloud's \
extensions (marked \"eftcloud extension\"; tag `eftcloud extensions`).

Conventions: request fields are read from an `application/x-www-form-urlencoded` body, a JSON \
body, and the query string (the body wins where both have a key; keys match \
case-insensitively; unknown keys are ignored; a key given twice in the body, or twice in the \
query string, is refused with 400 `Field <name> given more than once`). A body whose \
`Content-Length` is over the server's limit gets 413 before it is read. Responses are JSON. Paths match \
case-insensitively and a trailing slash is ignored. A known path with the wrong method is 404. \
CORS is open (`*`) and preflight `OPTIONS` requests are answered. Every error body is \
`{\"error\": \"<message>\"}`. Credentials: as in SmartConnect, a keyless register is \
identified by the triple `POSRegisterID` + `POSBusinessName` + `POSVendorName`, and a \
transaction's polling token (`merchantAccessToken`) is the credential of its polling URL. An \
eftcloud API key (`Authorization: Bearer eftk_...`) is optional unless the operator requires \
keys; a key acts within its scopes (`pos:transact` to pair, start and cancel; `pos:read` to \
poll, look up, read timelines and register status) and for its merchant or vendor only: \
another merchant's registers and transactions are answered as if they did not exist. 401 \
(with `WWW-Authenticate: Bearer`): keys are required and none was sent, or the key is \
malformed, unknown, expired or revoked; 403: the key lacks the route's scope, or a vendor key \
names another vendor. See docs/accounts.md. Amounts are whole cents as \
decimal strings. See docs/pos-api.md in the repository for examples.",
    ),
    paths(
        super::pairing::pair,
        super::transaction::create,
        super::polling::poll,
        super::cancel::cancel,
        super::timeline::events,
        super::lookup::lookup,
        super::register_status::status,
        super::follow_ups::refund,
        super::follow_ups::void,
        super::follow_ups::adjust,
        super::follow_ups::increment,
        super::follow_ups::capture,
        super::follow_ups::release,
        super::follow_ups::payment,
        super::receipts::send,
        super::receipts::show,
        super::orders::create,
        super::orders::get_order,
        super::orders::cancel,
        super::actions::display,
        super::actions::input,
        super::actions::print,
        super::actions::qr,
        super::events::list,
        super::events::one,
        super::webhooks::create,
        super::webhooks::list,
        super::webhooks::get_one,
        super::webhooks::change,
        super::webhooks::delete,
        super::webhooks::rotate,
        super::webhooks::deliveries,
        super::webhooks::redeliver,
    ),
    components(schemas(
        TransactionEnvelope,
        TransactionStatus,
        ErrorBody,
        PairingResponse,
        super::pairing::PairingForm,
        super::transaction::TransactionForm,
        super::cancel::CancelForm,
        super::timeline::Timeline,
        super::timeline::TimelineEntry,
        super::register_status::RegisterStatus,
        super::follow_ups::FollowUpForm,
        super::follow_ups::PaymentView,
        super::follow_ups::FollowUpView,
        super::receipts::ReceiptForm,
        super::receipts::ReceiptsQueued,
        super::receipts::ReceiptView,
        super::receipts::DeliveryView,
        super::orders::OrderForm,
        super::orders::OrderCancelForm,
        super::orders::OrderView,
        super::orders::ReversalView,
        super::actions::DisplayForm,
        super::actions::DisplayView,
        super::actions::InputForm,
        super::actions::PrintForm,
        super::actions::QrForm,
        protocol::action::Receipts,
        protocol::action::Receipt,
        protocol::action::ReceiptField,
        super::events::EventsPage,
        super::webhooks::EndpointView,
        super::webhooks::AttemptView,
        super::webhooks::CreateBody,
        super::webhooks::ChangeBody,
        super::webhooks::RotateBody,
        super::webhooks::RedeliverBody,
    )),
    tags(
        (name = "SmartConnect", description = "The routes of the SmartConnect POS API, wire-compatible."),
        (name = "eftcloud extensions", description = "eftcloud extensions: optional routes an existing SmartConnect client never needs."),
    ),
)]
pub struct ApiDoc;

/// The document with this server's public URL as its server, for the newest API version.
pub fn document(public_url: &str) -> Document {
    let mut doc = ApiDoc::openapi();
    doc.info.version = super::versioning::newest().name.to_string();
    doc.servers = Some(vec![Server::new(public_url.trim_end_matches('/'))]);
    // Every field may come in the query string instead (some clients send an empty body), so
    // no request body is required, whatever the derive concluded from the field types.
    for item in doc.paths.paths.values_mut() {
        for op in [&mut item.put, &mut item.post, &mut item.patch]
            .into_iter()
            .flatten()
        {
            if let Some(body) = op.request_body.as_mut() {
                body.required = Some(Required::False);
            }
        }
    }
    // An API key is optional on every route (keyless SmartConnect clients send none), and
    // every route may refuse a credential the same two ways.
    let components = doc.components.get_or_insert_with(Default::default);
    components.security_schemes.insert(
        "apiKey".into(),
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("eftk_<id>_<secret>")
                .description(Some("An eftcloud API key (`eftcloud api-key create`)."))
                .build(),
        ),
    );
    let error = || {
        utoipa::openapi::ResponseBuilder::new().content(
            "application/json",
            utoipa::openapi::ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("ErrorBody")))
                .build(),
        )
    };
    for (path, item) in doc.paths.paths.iter_mut() {
        // The `/v1` routes (events, webhooks) take keys only: no register triple names a
        // merchant's log.
        let key_only = path.starts_with("/v1/");
        for op in [
            &mut item.get,
            &mut item.put,
            &mut item.post,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            op.security = Some(if key_only {
                vec![SecurityRequirement::new("apiKey", Vec::<String>::new())]
            } else {
                vec![
                    SecurityRequirement::default(),
                    SecurityRequirement::new("apiKey", Vec::<String>::new()),
                ]
            });
            let responses = &mut op.responses.responses;
            responses.entry("401".into()).or_insert_with(|| {
                error()
                    .description(
                        "Keys are required and none was sent, or the API key is malformed, \
                         unknown, expired or revoked (`WWW-Authenticate: Bearer`)",
                    )
                    .build()
                    .into()
            });
            responses.entry("403".into()).or_insert_with(|| {
                error()
                    .description(
                        "The API key lacks this route's scope, or a vendor key names another vendor",
                    )
                    .build()
                    .into()
            });
        }
    }
    doc
}

/// Serves the document of the newest version (`/openapi.json`).
pub async fn serve(State(state): State<ApiState>) -> Json<Document> {
    Json(document(state.settings.public_url.as_str()))
}

/// Serves one version's document (`/openapi/<version>.json`); 404 for a version not served.
/// Every served version is the newest so far, so each is the same document under its name;
/// when a version changes the extensions, its own document is kept here.
pub async fn serve_version(
    State(state): State<ApiState>,
    axum::extract::Path(file): axum::extract::Path<String>,
) -> Result<Json<Document>, super::error::ApiError> {
    let version = file
        .strip_suffix(".json")
        .and_then(|name| super::versioning::VERSIONS.iter().find(|v| v.name == name))
        .ok_or(super::error::RouteNotFound)?;
    let mut doc = document(state.settings.public_url.as_str());
    doc.info.version = version.name.to_string();
    Ok(Json(doc))
}
