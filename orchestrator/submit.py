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
import time
from pathlib import Path

from augworth.results import StoreError
from augworth.search_spaces import Spec


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
    refuse_credentials(store)
    if _token_available():  # Ray reads its auth mode when it is imported
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray.exceptions
    from ray.job_submission import JobSubmissionClient

    try:
        client = JobSubmissionClient(address)
    except (ConnectionError, RuntimeError, ValueError, ray.exceptions.AuthenticationError) as exc:
        raise StoreError(f"--address {address}: cannot reach the Ray job server: {str(exc).splitlines()[0]}") from None
    flags = (" --extend" if extend else "") + (" --retry-failed" if retry_failed else "")
    # the cluster's Python is checked first: one line naming what it lacks, not a traceback of the first import
    preflight = " ".join(["python -m augworth.orchestrator.preflight", *dependency_modules()])
    # submit_job packs and uploads the working dir before it returns: the temp dir is not needed after it
    with tempfile.TemporaryDirectory(prefix="augworth-submit-") as workdir:
        Path(workdir, "spec.yaml").write_text(text)
        deadline = time.monotonic() + AGENT_WAIT_S
        while True:
            try:
                job_id = client.submit_job(
                    entrypoint=f"{preflight} && python -m augworth.orchestrator.cli run spec.yaml "
                               f"--store {shlex.quote(store)} --no-progress{flags}",
                    runtime_env={"working_dir": workdir, "py_modules": shipped_modules()},
                    metadata={"augworth_sweep": spec.name},
                )
                break
            except RuntimeError as exc:  # a head that has just started: its job agent comes up seconds after it
                if "No available agent" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(1)
    return job_id, client


AGENT_WAIT_S = 60  # how long `submit` waits for a fresh head's job agent


def shipped_modules() -> list[str]:
    """The job's `py_modules`: the one package `augworth`, from where this process imports it (in a checkout its
    folders are links to the packages beside it, which Ray's packing follows)."""
    import augworth

    return [str(Path(str(augworth.__file__)).parent)]


def dependency_modules() -> list[str]:
    """A top-level module of each of augworth's dependencies, from its installed metadata (none without it)."""
    import re
    from importlib import metadata

    from packaging.requirements import Requirement  # a dependency of Ray's

    try:
        requirements = [Requirement(r) for r in metadata.requires("augworth") or []]
    except metadata.PackageNotFoundError:  # a bare checkout on PYTHONPATH: nothing to say what it needs
        return []

    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "_", name).lower()

    modules: dict[str, list[str]] = {}
    for module, dists in metadata.packages_distributions().items():
        for dist in dists:
            modules.setdefault(norm(dist), []).append(module)
    out = []
    for requirement in requirements:
        if requirement.marker is not None:  # an extra's (dev, postgres, ...): not needed to run a sweep
            continue
        names = sorted(modules.get(norm(requirement.name), []))
        name = norm(requirement.name) if norm(requirement.name) in names else next(
            (n for n in names if not n.startswith("_")), None)
        if name:
            out.append(name)
    return out


def refuse_credentials(store: str) -> None:
    """The store URI is written into the job's entrypoint (kept by Ray, shown by its dashboard and `ray job`)."""
    from augworth.search_spaces.secrets import redact

    if redact(store) != store:
        raise StoreError(f"--store {redact(store)} carries credentials, which would be written into the job's "
                         "entrypoint: give them to the cluster's nodes through their environment instead (for S3: "
                         "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")


async def follow(client, job_id: str) -> str:  # noqa: ANN001 - JobSubmissionClient
    """Print the job's logs as they come; returns its final status."""
    async for lines in client.tail_job_logs(job_id):
        print(lines, end="", flush=True)
    return str(client.get_job_status(job_id))
