"""Provider metadata read by Airflow's providers manager (entry point `apache_airflow_provider`)."""

from __future__ import annotations

from typing import Any

from runwatch_airflow import __version__

_INTEGRATION = "runwatch"


def get_provider_info() -> dict[str, Any]:
    """The provider's description, connection type and classes, as Airflow expects them."""
    return {
        "package-name": "airflow-provider-runwatch",
        "name": "runwatch",
        "description": "Wait for runs on remote systems (any run API, described by a runwatch profile) "
        "without holding a worker slot: a deferrable sensor, a trigger, a hook and a start-and-wait operator.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": _INTEGRATION,
                "tags": ["software"],
            }
        ],
        "hooks": [{"integration-name": _INTEGRATION, "python-modules": ["runwatch_airflow.hooks.runwatch"]}],
        "triggers": [
            {
                "integration-name": _INTEGRATION,
                "python-modules": [
                    "runwatch_airflow.triggers.runwatch",
                    "runwatch_airflow.triggers.run_ended",
                ],
            }
        ],
        "sensors": [
            {"integration-name": _INTEGRATION, "python-modules": ["runwatch_airflow.sensors.runwatch"]}
        ],
        "operators": [
            {"integration-name": _INTEGRATION, "python-modules": ["runwatch_airflow.operators.runwatch"]}
        ],
        "extra-links": ["runwatch_airflow.links.RemoteRunLink"],
        "connection-types": [
            {
                "connection-type": "runwatch",
                "hook-class-name": "runwatch_airflow.hooks.runwatch.RunStatusHook",
                "hook-name": "runwatch (remote run API)",
                "ui-field-behaviour": {
                    "hidden-fields": [],
                    "relabeling": {
                        "host": "Base URL",
                        "password": "Token, password or client secret",
                        "login": "User (basic) or client id (client credentials)",
                    },
                    "placeholders": {
                        "host": "https://api.example.com",
                        "schema": "https (optional when the base URL has a scheme)",
                        "port": "optional when the base URL has a port",
                        "login": "only for auth styles basic and client_credentials",
                        "password": "API token, password or OAuth client secret",
                        "extra": '{"profile": "standard"}',
                    },
                },
                "conn-fields": {
                    "profile": {
                        "label": "Profile",
                        "description": "A built-in profile name (see `runwatch profiles`) or an inline profile "
                        "as a JSON object. Operators may override it.",
                        "schema": {"type": ["string", "object", "null"], "default": "standard"},
                    },
                    "auth_style": {
                        "label": "Auth style",
                        "description": "How the token is sent: bearer (Authorization: <scheme> <token>), "
                        "basic (login + token), header (the header named below), or client_credentials "
                        "(OAuth 2.0: login is the client id, password the client secret, tokens from the token "
                        "URL below, renewed before they expire); azure (azure-identity's DefaultAzureCredential "
                        "for the scope below), google (Application Default Credentials), github_app (login "
                        "is the app id, password its private key, the token URL the installation's "
                        "access_tokens URL); these three need runwatch[azure], [google] or [github].",
                        "schema": {
                            "type": "string",
                            "enum": [
                                "bearer",
                                "basic",
                                "header",
                                "client_credentials",
                                "azure",
                                "google",
                                "github_app",
                            ],
                            "default": "bearer",
                        },
                    },
                    "token_url": {
                        "label": "Token URL",
                        "description": "OAuth 2.0 token endpoint, for auth style client_credentials; for "
                        "github_app, https://api.github.com/app/installations/<id>/access_tokens.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "scope": {
                        "label": "Scope",
                        "description": "OAuth 2.0 scope (e.g. api://<app>/.default), if the provider wants one.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "audience": {
                        "label": "Audience",
                        "description": "OAuth 2.0 audience (Auth0, Okta), if the provider wants one.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "auth_header": {
                        "label": "Auth header",
                        "description": "The header that carries the token when auth style is header.",
                        "schema": {"type": ["string", "null"], "default": "X-Api-Key"},
                    },
                    "verify": {
                        "label": "TLS verification",
                        "description": "true, false, or the path of a CA bundle.",
                        "schema": {"type": ["boolean", "string"], "default": True},
                    },
                    "headers": {
                        "label": "Extra headers",
                        "description": "A JSON object of headers sent with every request (no secrets: "
                        "put the token in the password field).",
                        "schema": {"type": ["object", "null"], "format": "json"},
                    },
                    "run_link": {
                        "label": "Run link template",
                        "description": "The page of a run for people, with {run_id} (e.g. "
                        "https://ui.example.com/runs/{run_id}); the run's status URL when empty.",
                        "schema": {"type": ["string", "null"]},
                    },
                    "params": {
                        "label": "URL parameters",
                        "description": "A JSON object of values for the profile's URL template (an account "
                        "id, a workspace).",
                        "schema": {"type": ["object", "null"], "format": "json"},
                    },
                    "budget_conn_id": {
                        "label": "Budget: Redis connection",
                        "description": "The id of a redis connection (host, port, password) holding one request "
                        "budget for this API, shared by every triggerer and worker that uses it. Empty: no shared "
                        "budget. Needs airflow-provider-runwatch[redis].",
                        "schema": {"type": ["string", "null"]},
                    },
                    "budget_rate": {
                        "label": "Budget: requests per second",
                        "description": "Requests per second to this API from all processes together (> 0).",
                        "schema": {"type": ["number", "null"], "minimum": 0},
                    },
                    "budget_burst": {
                        "label": "Budget: burst",
                        "description": "Requests all processes may send at once before the rate applies.",
                        "schema": {"type": ["integer", "null"], "minimum": 1, "default": 1},
                    },
                },
            }
        ],
    }
