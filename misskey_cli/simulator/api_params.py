"""The HTTP API's vocabulary: Misskey's error objects and its parameter checks (docs/protocol.md §9).

Pure: ``ApiFailure`` is an error answer (status and ``{"error": ...}`` object, as a real server
writes it), and the param readers raise the ``INVALID_PARAM`` a real server gives for a wrong type
or range (``info.param`` is the JSON-schema path, ``info.reason`` the validator's words).
"""

from __future__ import annotations

from typing import Any

from misskey_cli.simulator import history as hist
from misskey_cli.simulator.httpwire import HttpResponse


def _error(message: str, code: str, error_id: str, kind: str = "client") -> dict[str, Any]:
    return {"message": message, "code": code, "id": error_id, "kind": kind}


# The real error objects (rest.jsonl; the rest from Misskey's ApiCallService and ApiServerService).
CREDENTIAL_REQUIRED = _error("Credential required.", "CREDENTIAL_REQUIRED", "1384574d-a912-4b81-8601-c7b1c4085df1")
AUTHENTICATION_FAILED = _error("Authentication failed. Please ensure your token is correct.", "AUTHENTICATION_FAILED",
                               "b0a7f5f8-dc2f-4171-b91f-de88ad238e14")
YOUR_ACCOUNT_SUSPENDED = _error("Your account has been suspended.", "YOUR_ACCOUNT_SUSPENDED",
                                "a8c724b3-6e9c-4b46-b1a8-bc3ed6258370", "permission")
INVALID_PARAM = _error("Invalid param.", "INVALID_PARAM", "3d81ceae-475f-4600-b2a8-2bc116157532")
RATE_LIMIT_EXCEEDED = _error("Rate limit exceeded. Please try again later.", "RATE_LIMIT_EXCEEDED",
                             "d5826d14-3982-4d2e-8011-b9e9f02499ef")
INTERNAL_ERROR = _error("Internal error occurred. Please contact us if the error persists.", "INTERNAL_ERROR",
                        "5d37dbcb-891e-41ca-a3d6-e690c97775ac", "server")
UNKNOWN_API_ENDPOINT = _error("Unknown API endpoint.", "UNKNOWN_API_ENDPOINT", "2ca3b769-540a-4f08-9dd5-b5a825b6d0f1")
PERMISSION_DENIED = _error("Your app does not have the necessary permissions to use this endpoint.",
                           "PERMISSION_DENIED", "1370e5b7-d4eb-4566-bb1d-7748ee6a1838", "permission")

# The endpoints' own errors (each endpoint's ``meta.errors`` in Misskey's source: same words, codes, ids).
NO_SUCH_NOTE_SHOW = _error("No such note.", "NO_SUCH_NOTE", "24fcbfc6-2e37-42b6-8388-c29b3861a08d")
NO_SUCH_NOTE_DELETE = _error("No such note.", "NO_SUCH_NOTE", "490be23f-8c1f-4796-819f-94cb4f9d1630")
ACCESS_DENIED_DELETE = _error("Access denied.", "ACCESS_DENIED", "fe8d7103-0ea8-4ec3-814d-f8b401dc69e9")
NO_SUCH_NOTE_REACT = _error("No such note.", "NO_SUCH_NOTE", "033d0620-5bfe-4027-965d-980b0c85a3ea")
ALREADY_REACTED = _error("You are already reacting to that note.", "ALREADY_REACTED",
                         "71efcf98-86d6-4e2b-b2ad-9d032369366b")
NO_SUCH_NOTE_UNREACT = _error("No such note.", "NO_SUCH_NOTE", "764d9fce-f9f2-4a0e-92b1-6ceac9a7ad37")
NOT_REACTED = _error("You are not reacting to that note.", "NOT_REACTED", "92f4426d-4196-4125-aa5b-02943e2ec8fc")
NO_SUCH_NOTE_VOTE = _error("No such note.", "NO_SUCH_NOTE", "ecafbd2e-c283-4d6d-aecb-1a0a33b75396")
NO_POLL = _error("The note does not attach a poll.", "NO_POLL", "5f979967-52d9-4314-a911-1c673727f92f")
INVALID_CHOICE = _error("Choice ID is invalid.", "INVALID_CHOICE", "e0cc9a04-f2e8-41e4-a5f1-4127293260cc")
ALREADY_VOTED = _error("You have already voted.", "ALREADY_VOTED", "0963fc77-efac-419b-9424-b391608dc6d8")
ALREADY_EXPIRED = _error("The poll is already expired.", "ALREADY_EXPIRED", "1022a357-b085-4054-9083-8f8de358337e")
NO_SUCH_RENOTE_TARGET = _error("No such renote target.", "NO_SUCH_RENOTE_TARGET",
                               "b5c90186-4ab0-49c8-9bba-a1f76c282ba4")
CANNOT_RENOTE_PURE_RENOTE = _error("You can not Renote a pure Renote.", "CANNOT_RENOTE_TO_A_PURE_RENOTE",
                                   "fd4cc33e-2a37-48dd-99cc-9b806eb2031a")
NO_SUCH_REPLY_TARGET = _error("No such reply target.", "NO_SUCH_REPLY_TARGET", "749ee0f6-d3da-459a-bf02-282e2da4292c")
CANNOT_REPLY_PURE_RENOTE = _error("You can not reply to a pure Renote.", "CANNOT_REPLY_TO_A_PURE_RENOTE",
                                  "3ac74a84-8fd5-4bb0-870f-01804f82ce15")
CANNOT_CREATE_EXPIRED_POLL = _error("Poll is already expired.", "CANNOT_CREATE_ALREADY_EXPIRED_POLL",
                                    "04da457d-b083-4055-9082-955525eda5a5")
NO_SUCH_FILE = _error("Some files are not found.", "NO_SUCH_FILE", "b6992544-63e7-67f0-fa7f-32444b1b5306")
NO_SUCH_USER_SHOW = _error("No such user.", "NO_SUCH_USER", "4362f8dc-731f-4ad8-a694-be5a88922a24")
NO_SUCH_USER_NOTES = _error("No such user.", "NO_SUCH_USER", "27e494ba-2ac2-48e8-893b-10d4d8c2387b")
NO_SUCH_USER_FOLLOW = _error("No such user.", "NO_SUCH_USER", "fcd2eef9-a9b2-4c4f-8624-038099e90aa5")
FOLLOWEE_IS_YOURSELF_FOLLOW = _error("Followee is yourself.", "FOLLOWEE_IS_YOURSELF",
                                     "26fbe7bb-a331-4857-af17-205b426669a9")
ALREADY_FOLLOWING = _error("You are already following that user.", "ALREADY_FOLLOWING",
                           "35387507-38c7-4cb9-9197-300b93783fa0")
NO_SUCH_USER_UNFOLLOW = _error("No such user.", "NO_SUCH_USER", "5b12c78d-2b28-4dca-99d2-f56139b42ff8")
FOLLOWEE_IS_YOURSELF_UNFOLLOW = _error("Followee is yourself.", "FOLLOWEE_IS_YOURSELF",
                                       "d9e400b9-36b0-4808-b1d8-79e707f1296c")
NOT_FOLLOWING = _error("You are not following that user.", "NOT_FOLLOWING", "5dbf82f5-c92b-40b1-87d1-6c8c0741fd09")



class ApiFailure(Exception):
    """An error answer: HTTP status and the ``error`` object."""

    def __init__(self, status: int, error: dict[str, Any], info: dict[str, Any] | None = None,
                 headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(error["code"])
        self.status = status
        self.error = dict(error, info=info) if info is not None else dict(error)
        self.headers = headers or []

    def response(self) -> HttpResponse:
        return HttpResponse.json(self.status, {"error": self.error}, self.headers)


def invalid_param(param: str, reason: str) -> ApiFailure:
    return ApiFailure(400, INVALID_PARAM, {"param": param, "reason": reason})


def int_param(body: dict[str, Any], name: str, default: int | None, low: int | None = None,
              high: int | None = None, at: str = "#") -> int | None:
    """``body[name]`` as an integer in range; ``at`` is where ``body`` sits in the request's schema."""
    value = body.get(name, default)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid_param(f"{at}/properties/{name}/type", "must be integer")
    if low is not None and value < low:
        raise invalid_param(f"{at}/properties/{name}/minimum", f"must be >= {low}")
    if high is not None and value > high:
        raise invalid_param(f"{at}/properties/{name}/maximum", f"must be <= {high}")
    return value


def str_param(body: dict[str, Any], name: str, required: bool = False) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise invalid_param("#/required", f"must have required property '{name}'")
        return None
    if not isinstance(value, str):
        raise invalid_param(f"#/properties/{name}/type", "must be string")
    return value


def bool_params(body: dict[str, Any], names: tuple[str, ...]) -> dict[str, bool]:
    out: dict[str, bool] = {}
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        if not isinstance(value, bool):
            raise invalid_param(f"#/properties/{name}/type", "must be boolean")
        out[name] = value
    return out


def page_of(body: dict[str, Any]) -> hist.Page:
    """``limit`` (1..100, default 10), ``sinceId``, ``untilId``, ``sinceDate``, ``untilDate``."""
    if "limit" in body and body["limit"] is None:  # a null is not the default: the schema says integer
        raise invalid_param("#/properties/limit/type", "must be integer")
    limit = int_param(body, "limit", 10, 1, 100)
    assert limit is not None
    return hist.Page(limit, str_param(body, "sinceId"), str_param(body, "untilId"),
                     int_param(body, "sinceDate", None), int_param(body, "untilDate", None))


