//! `GET /openapi.json`: the OpenAPI 3 document covers every POS route the router serves, with
//! the right method, so a new route without documentation fails here.

use crate::harness::*;
use serde_json::Value;

/// Every route the router serves under `/pos`, as registered in `app.rs` (paths are matched
/// case-insensitively, so the document may spell them `/POS/Transaction`). A route added to the
/// router belongs here, and then in the document.
const POS_ROUTES: &[(&str, &str)] = &[
    ("put", "/pos/pairing/{code}"),
    ("post", "/pos/transaction"),
    ("get", "/pos/transaction/{id}"),
    ("post", "/pos/transaction/{id}/cancel"),
    ("get", "/pos/transaction/{id}/events"),
    ("post", "/pos/transaction/{id}/refund"),
    ("post", "/pos/transaction/{id}/void"),
    ("post", "/pos/transaction/{id}/adjust"),
    ("post", "/pos/transaction/{id}/increment"),
    ("post", "/pos/transaction/{id}/capture"),
    ("post", "/pos/transaction/{id}/release"),
    ("get", "/pos/transaction/{id}/payment"),
    ("post", "/pos/transaction/{id}/receipt"),
    ("get", "/pos/transaction/{id}/receipt"),
    ("post", "/pos/orders"),
    ("get", "/pos/orders/{id}"),
    ("post", "/pos/orders/{id}/cancel"),
    ("get", "/pos/lookup"),
    ("get", "/pos/register"),
    ("post", "/pos/register/display"),
    ("post", "/pos/register/input"),
    ("post", "/pos/register/print"),
    ("post", "/pos/register/qr"),
    ("get", "/v1/events"),
    ("get", "/v1/events/{id}"),
    ("post", "/v1/webhook-endpoints"),
    ("get", "/v1/webhook-endpoints"),
    ("get", "/v1/webhook-endpoints/{id}"),
    ("patch", "/v1/webhook-endpoints/{id}"),
    ("delete", "/v1/webhook-endpoints/{id}"),
    ("post", "/v1/webhook-endpoints/{id}/rotate-secret"),
    ("get", "/v1/webhook-endpoints/{id}/deliveries"),
    ("post", "/v1/webhook-endpoints/{id}/redeliver"),
];

/// Lower case, with every `{param}` name erased: `/POS/Pairing/{pairingCode}` and
/// `/pos/pairing/{code}` are the same route.
fn normalize(path: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    for c in path.chars() {
        match c {
            '{' => {
                in_param = true;
                out.push('{');
            }
            '}' => {
                in_param = false;
                out.push('}');
            }
            _ if in_param => {}
            c => out.push(c.to_ascii_lowercase()),
        }
    }
    out
}

/// The route with sample values for its parameters, to call it.
fn concrete(path: &str) -> String {
    path.replace("{code}", "00000000")
        .replace("{id}", "3f1c1c2e-0000-4000-8000-000000000000")
}

const METHODS: &[&str] = &["get", "put", "post", "delete", "patch", "head", "options"];

#[tokio::test]
async fn openapi_document_covers_every_pos_route() {
    let app = spawn_app().await;
    let (status, doc) = app.get_json(&app.url("/openapi.json")).await;
    assert_eq!(status, 200, "{doc}");
    let version = doc["openapi"].as_str().unwrap_or_default();
    assert!(version.starts_with("3."), "not OpenAPI 3: {version:?}");
    assert_eq!(doc["servers"][0]["url"], app.base.as_str());

    // Every documented (method, path) pair, normalized.
    let paths = doc["paths"].as_object().expect("paths");
    let mut documented: Vec<(String, String)> = Vec::new();
    for (path, item) in paths {
        for m in METHODS {
            if item.get(*m).is_some() {
                documented.push((m.to_string(), normalize(path)));
            }
        }
    }
    documented.sort();

    let mut expected: Vec<(String, String)> = POS_ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), normalize(p)))
        .collect();
    expected.sort();
    // Both ways: no served route without documentation, no documented route that is not served.
    assert_eq!(documented, expected);

    // The list above is what the router really serves: each route answers its own error, not
    // the fallback's `Not found`, and the wrong method gets the fallback (404).
    for (method, path) in POS_ROUTES {
        let url = app.url(&concrete(path));
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let r = app.http.request(m, &url).send().await.unwrap();
        let body: Value = r.json().await.unwrap_or(Value::Null);
        assert_ne!(body["error"], "Not found", "{method} {path} is not routed");
        // A method the path does not serve at all.
        let wrong = ["get", "put", "post", "delete"]
            .into_iter()
            .find(|m| !POS_ROUTES.iter().any(|(rm, rp)| rp == path && rm == m))
            .unwrap();
        let wrong = reqwest::Method::from_bytes(wrong.to_uppercase().as_bytes()).unwrap();
        let r = app.http.request(wrong, &url).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 404, "{path} with the wrong method");
    }

    // The bodies are described, and the function enum is the whole table.
    let schemas = &doc["components"]["schemas"];
    for name in [
        "TransactionEnvelope",
        "TransactionStatus",
        "ErrorBody",
        "PairingResponse",
        "Timeline",
        "TimelineEntry",
        "RegisterStatus",
    ] {
        assert!(schemas.get(name).is_some(), "schema {name} missing");
    }
    let functions = schemas["TransactionForm"]["properties"]["TransactionType"]["enum"]
        .as_array()
        .expect("TransactionType enum");
    assert_eq!(functions.len(), protocol::Function::ALL.len());
    for f in protocol::Function::ALL {
        assert!(functions.contains(&Value::from(f.as_str())), "{f}");
    }
    let data = &schemas["TransactionEnvelope"]["properties"]["data"]["properties"];
    for key in [
        "PollingUrl",
        "TransactionResult",
        "Result",
        "DisplayText",
        "PosReference",
    ] {
        assert!(data.get(key).is_some(), "data.{key} undocumented");
    }

    // Headers of the extensions and of the rate limit.
    let create = &paths["/POS/Transaction"]["post"];
    let params = create["parameters"].as_array().expect("parameters");
    assert!(params
        .iter()
        .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header"));
    for status in ["200", "400", "409", "429"] {
        assert!(create["responses"].get(status).is_some(), "POST {status}");
    }
    assert!(create["responses"]["200"]["headers"]
        .get("Idempotent-Replayed")
        .is_some());
    let poll = &paths["/pos/transaction/{id}"]["get"];
    assert!(poll["responses"]["429"]["headers"]
        .get("Retry-After")
        .is_some());

    // Every request that has a body documents the 413 its limit gives, and the 400 of a
    // field given twice; so do the routes that read fields from an optional body.
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let reads_fields = op.get("requestBody").is_some()
                || [
                    "/pos/lookup",
                    "/pos/register",
                    "/pos/transaction/{id}/events",
                ]
                .contains(&path.as_str());
            if !reads_fields {
                continue;
            }
            let responses = &op["responses"];
            assert!(responses.get("413").is_some(), "{method} {path}: no 413");
            let bad = responses["400"]["description"].as_str().unwrap_or_default();
            assert!(
                bad.contains("given more than once"),
                "{method} {path}: 400 does not mention repeated fields: {bad}"
            );
        }
    }

    // A required string is never empty: every required string parameter and request body
    // field says `minLength: 1` (enumerations list their non-empty values instead).
    let non_empty = |schema: &Value, what: &str| {
        if schema["type"] == "string" && schema.get("enum").is_none() {
            assert!(
                schema["minLength"].as_u64().unwrap_or(0) >= 1,
                "{what}: no minLength: {schema}"
            );
        }
    };
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["required"] == true {
                    non_empty(&p["schema"], &format!("{method} {path} {}", p["name"]));
                }
            }
        }
    }
    for form in ["PairingForm", "TransactionForm", "CancelForm", "ErrorBody"] {
        let schema = &schemas[form];
        let required = schema["required"].as_array().cloned().unwrap_or_default();
        for name in &required {
            let name = name.as_str().unwrap();
            non_empty(&schema["properties"][name], &format!("{form}.{name}"));
        }
    }
    assert_eq!(
        schemas["PairingForm"]["properties"]["POSRegisterID"]["minLength"],
        1
    );
    assert_eq!(
        schemas["TransactionForm"]["properties"]["POSVendorName"]["minLength"],
        1
    );

    // Lookup says that one of its two keys is required, on the operation and on each key.
    let lookup = &paths["/pos/lookup"]["get"];
    let rule = "One of `PosReference` or `TransactionId` is required";
    assert!(
        lookup["description"].as_str().unwrap().contains(rule),
        "{}",
        lookup["description"]
    );
    for key in ["PosReference", "TransactionId"] {
        let p = lookup["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == key)
            .unwrap_or_else(|| panic!("lookup parameter {key}"));
        assert_ne!(p["required"], true, "{key}");
        assert!(
            p["description"].as_str().unwrap().contains(rule),
            "{key}: {}",
            p["description"]
        );
    }
}

#[tokio::test]
async fn api_versions_are_chosen_by_header_echoed_and_documented_per_version() {
    let app = spawn_app().await;
    let (_, reg) = paired_terminal(&app, "dev-versions").await;
    let status_of = |version: Option<&'static str>, path: &str| {
        let mut r = app.http.get(app.url(path));
        if let Some(v) = version {
            r = r.header("Eftcloud-Version", v);
        }
        async move { r.send().await.unwrap() }
    };
    let q = format!(
        "/pos/register?POSRegisterID={}&POSBusinessName={}&POSVendorName={}",
        reg.register_id, reg.business_name, reg.vendor_name
    );
    // No header: the newest version, named on the answer; the SmartConnect surface too.
    for path in [q.as_str(), "/openapi.json"] {
        let r = status_of(None, path).await;
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers()["eftcloud-version"], "2026-12-01", "{path}");
        assert!(r.headers().get("deprecation").is_none());
        assert!(r.headers().get("sunset").is_none());
    }
    let r = status_of(Some("2026-12-01"), &q).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["eftcloud-version"], "2026-12-01");
    // An unknown version is refused before anything runs, saying which exist.
    let r = status_of(Some("2019-01-01"), &q).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["error"],
        "Unknown API version '2019-01-01': supported: 2026-12-01"
    );
    // A transaction under an unknown version is not started.
    let r = app
        .http
        .post(app.url("/POS/Transaction"))
        .header("Eftcloud-Version", "nope")
        .form(&purchase(&reg, "1000"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let (_, status) = app.get_json(&app.url(&q)).await;
    assert_eq!(status["busy"], false, "{status}");
    // Each version's document, by name; an unknown one is 404.
    let (s, doc) = app.get_json(&app.url("/openapi/2026-12-01.json")).await;
    assert_eq!(s, 200);
    assert_eq!(doc["info"]["version"], "2026-12-01");
    assert!(doc["paths"].get("/v1/events").is_some());
    let (_, newest) = app.get_json(&app.url("/openapi.json")).await;
    assert_eq!(newest["info"]["version"], "2026-12-01");
    assert_eq!(
        app.get_json(&app.url("/openapi/2019-01-01.json")).await.0,
        404
    );
    assert_eq!(app.get_json(&app.url("/openapi/2026-12-01")).await.0, 404);
    // The key-only routes say so in the document.
    assert_eq!(
        doc["paths"]["/v1/events"]["get"]["security"],
        serde_json::json!([{"apiKey": []}])
    );
}
