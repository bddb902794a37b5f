"""Submit a sweep to a Ray cluster as a Ray Job: the driver then runs on the head, not on this machine.

The job's working directory carries the spec; our packages travel as `py_modules`, so the cluster needs
only the dependencies. Token authentication: Ray 2.60's `ray start --head` turns it on only where a token exists
on the head or RAY_AUTH_MODE=token is set there (and never makes one: the recipes in docs/recipes do both), and
a Jobs client sends its token only with RAY_AUTH_MODE=token. So where the user has a token (`RAY_AUTH_TOKEN`,
`RAY_AUTH_TOKEN_PATH` or `~/.ray/auth_token`) this sets that mode and the token goes with every request; it never
turns authentication off.
"""

from __future__ import annotations

import os
import shlex
import tempfile
from pathlib import Path

from results import StoreError
from search_spaces import Spec


def _token_available() -> bool:
    return bool(os.environ.get("RAY_AUTH_TOKEN") or os.environ.get("RAY_AUTH_TOKEN_PATH")
                or (Path.home() / ".ray" / "auth_token").is_file())


def check_store_root(store: str) -> str:
    """The job runs in a temporary folder on the head: a relative store path would land there."""
    if "://" not in store and not os.path.isabs(store):
        raise StoreError(f"--store {store!r}: submit needs an absolute path or a URI that the head node reaches")
    return store


def submit_sweep(spec: Spec, text: str, *, address: str, store: str, extend: bool = False,
                 retry_failed: bool = False) -> tuple[str, object]:
    """Submit; returns the job id and the client (to follow the job)."""
    check_store_root(store)
    if _token_available():  # Ray reads its auth mode when it is imported
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray.exceptions
    from ray.job_submission import JobSubmissionClient

    import analysis
    import orchestrator
    import results
    import search_spaces
    import trainables

    try:
        client = JobSubmissionClient(address)
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.AuthenticationError) as exc:
        raise StoreError(f"--address {address}: cannot reach the Ray job server: {str(exc).splitlines()[0]}") from None
    flags = (" --extend" if extend else "") + (" --retry-failed" if retry_failed else "")
    # submit_job packs and uploads the working dir before it returns: the temp dir is not needed after it
    with tempfile.TemporaryDirectory(prefix="augworth-submit-") as workdir:
        Path(workdir, "spec.yaml").write_text(text)
        job_id = client.submit_job(
            entrypoint=f"python -m orchestrator.cli run spec.yaml --store {shlex.quote(store)} --no-progress{flags}",
            runtime_env={"working_dir": workdir, "py_modules": [
                str(Path(m.__file__).parent) for m in (search_spaces, results, trainables, orchestrator, analysis)]},
            metadata={"augworth_sweep": spec.name},
        )
    return job_id, client


async def follow(client, job_id: str) -> str:  # noqa: ANN001 - JobSubmissionClient
    """Print the job's logs as they come; returns its final status."""
    async for lines in client.tail_job_logs(job_id):
        print(lines, end="", flush=True)
    return str(client.get_job_status(job_id))
