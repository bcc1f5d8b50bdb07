"""Check, before any training, that a push at the end of it can succeed: a token the Hub accepts, with write access,
and a repo that exists or can be created in a namespace the token may write to.

Without this, a bad `--hub_model_id`, a missing or wrong token, or someone else's namespace is found only after the
whole training run.
"""

from __future__ import annotations

from dataclasses import dataclass

from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError, HFValidationError
from huggingface_hub.utils import get_token, validate_repo_id


@dataclass(frozen=True)
class PushTarget:
    """Where the adapter will go: the full repo id and its URL."""

    repo_id: str
    url: str


def check_push_access(repo_id: str, *, token: str | None = None, private: bool | None = None) -> PushTarget:
    """Ask the Hub who the token belongs to, then create `repo_id` (or reach it when it exists).

    A bare name (`my-adapter`) goes into the token owner's namespace. Raises `ValueError` with a one-line message
    that says what to fix.
    """
    token = token or get_token()
    if not token:
        raise ValueError("--push_to_hub needs a Hub token: pass --hub_token, set HF_TOKEN, or run `hf auth login`.")
    api = HfApi(token=token)
    try:
        account = api.whoami()
    except HfHubHTTPError as error:
        message = f"The Hub rejects the token ({_status(error)}); pass a valid --hub_token or HF_TOKEN."
        raise ValueError(message) from None
    access = account.get("auth", {}).get("accessToken", {})
    if access.get("role") == "read":
        raise ValueError("The token is read-only; --push_to_hub needs a token with write access.")
    user = account["name"]
    repo_id = repo_id if "/" in repo_id else f"{user}/{repo_id}"
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise ValueError(f"--hub_model_id {repo_id} is not a valid repo id: {error}") from None
    namespace = repo_id.split("/")[0]
    writable = {user} | {org["name"] for org in account.get("orgs", []) if org.get("roleInOrg") != "read"}
    if namespace not in writable:
        raise ValueError(
            f"--hub_model_id {repo_id}: the token of {user} cannot write to the namespace {namespace!r} "
            f"(it can write to: {', '.join(sorted(writable))})."
        )
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        if private and not api.repo_info(repo_id).private:
            raise ValueError(
                f"{repo_id} exists and is public, but --hub_private_repo was asked; make it private on the Hub "
                "first, or push to another --hub_model_id."
            )
    except HfHubHTTPError as error:
        raise ValueError(f"Cannot create or reach {repo_id} on the Hub ({_status(error)}).") from None
    return PushTarget(repo_id, str(url))


def _status(error: HfHubHTTPError) -> str:
    response = getattr(error, "response", None)
    code = getattr(response, "status_code", None)
    message = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"{code}: {message}" if code else message
