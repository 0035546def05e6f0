//! `GET /openapi.json`: the OpenAPI 3 document of the POS API, generated from the handlers'
//! `#[utoipa::path]` annotations and the bodies' schemas, so it cannot drift from the code.
//! The human-readable page is `docs/pos-api.md`.

use super::ApiState;
use axum::extract::State;
use axum::Json;
use protocol::pos_api::{ErrorBody, PairingResponse, TransactionEnvelope, TransactionStatus};
use utoipa::openapi::{OpenApi as Document, Required, Server};
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
`{\"error\": \"<message>\"}`. There is no API key: a register is identified by the triple \
`POSRegisterID` + `POSBusinessName` + `POSVendorName`; a transaction's polling token \
(`merchantAccessToken`) is the credential of its polling URL. Amounts are whole cents as \
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
    )),
    tags(
        (name = "SmartConnect", description = "The routes of the SmartConnect POS API, wire-compatible."),
        (name = "eftcloud extensions", description = "eftcloud extensions: optional routes an existing SmartConnect client never needs."),
    ),
)]
pub struct ApiDoc;

/// The document with this server's public URL as its server.
pub fn document(public_url: &str) -> Document {
    let mut doc = ApiDoc::openapi();
    doc.servers = Some(vec![Server::new(public_url.trim_end_matches('/'))]);
    // Every field may come in the query string instead (some clients send an empty body), so
    // no request body is required, whatever the derive concluded from the field types.
    for item in doc.paths.paths.values_mut() {
        for op in [&mut item.put, &mut item.post].into_iter().flatten() {
            if let Some(body) = op.request_body.as_mut() {
                body.required = Some(Required::False);
            }
        }
    }
    doc
}

/// Serves the document.
pub async fn serve(State(state): State<ApiState>) -> Json<Document> {
    Json(document(state.settings.public_url.as_str()))
}
