//! A small blocking HTTP client over `ureq` that never turns a status into an error:
//! the tests assert on statuses.

use std::time::Duration;

use serde_json::Value;

pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

fn reply(response: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Reply {
    let mut response = response.expect("the HTTP request went through");
    let headers = response
        .headers()
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_owned()))
        .collect();
    Reply {
        status: response.status().as_u16(),
        headers,
        text: response
            .body_mut()
            .with_config()
            .limit(64 * 1024 * 1024)
            .read_to_string()
            .unwrap_or_default(),
    }
}

pub fn get(url: &str) -> Reply {
    reply(agent().get(url).call())
}

/// POSTs `body` (sent as is, JSON content type) with extra `headers`.
pub fn post(url: &str, body: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = agent().post(url).header("content-type", "application/json");
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    reply(if body.is_empty() {
        request.send_empty()
    } else {
        request.send(body)
    })
}
