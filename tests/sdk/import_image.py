"""Drive ferry's importImage with the real Azure SDK (azure-mgmt-containerregistry 15.x).

Called by a Rust integration test:

    python tests/sdk/import_image.py --endpoint http://127.0.0.1:PORT --token TOKEN \
        --subscription SUB --resource-group RG --registry NAME \
        --source-registry-uri HOST:PORT --source-image repo:tag --target-tag repo:tag \
        [--mode Force|NoForce] [--expect success|failure] [--timeout 120]

--expect success: exit 0 and print "SDK import succeeded" if the poller's result() returns.
--expect failure: exit 0 and print the exception's class, ARM error code and message if the
SDK raises HttpResponseError (or a subclass) from the POST or the polling.
Any other outcome, or running longer than --timeout seconds, exits 1.

Plain HTTP: azure-core refuses to send a bearer token to a non-https URL unless the call passes
enforce_https=False. begin_import_image forwards its leftover kwargs both to the initial POST and
to ARMPolling(**kwargs), which re-sends them with every poll, so the one kwarg covers the polls too.
"""

import argparse
import os
import signal
import sys
import time

from azure.core.credentials import AccessToken
from azure.core.exceptions import HttpResponseError
from azure.mgmt.containerregistry import ContainerRegistryManagementClient
from azure.mgmt.containerregistry.models import ImportImageParameters, ImportSource


class StaticToken:
    """A TokenCredential that always returns the token it was given."""

    def __init__(self, token):
        self._token = token

    def get_token(self, *scopes, **kwargs):
        return AccessToken(self._token, int(time.time()) + 3600)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--endpoint", required=True)
    p.add_argument("--token", required=True)
    p.add_argument("--subscription", required=True)
    p.add_argument("--resource-group", required=True)
    p.add_argument("--registry", required=True)
    p.add_argument("--source-registry-uri", required=True)
    p.add_argument("--source-image", required=True)
    p.add_argument("--target-tag", required=True, action="append", help="repeatable")
    p.add_argument("--mode", choices=["Force", "NoForce"], default="NoForce")
    p.add_argument("--expect", choices=["success", "failure"], default="success")
    p.add_argument("--timeout", type=int, default=120, help="overall limit in seconds")
    return p.parse_args()


def describe(e):
    """'Class: (code) message' for an HttpResponseError, from the parsed ARM error or the raw body."""
    code = getattr(e.error, "code", None)
    message = getattr(e.error, "message", None)
    if not code:
        try:
            code, message = e.response.json()["error"]["code"], e.response.json()["error"]["message"]
        except Exception:  # no response, not JSON, not the ARM envelope
            pass
    return f"{type(e).__name__}: ({code}) {message or e.message}"


def main():
    args = parse_args()

    def on_timeout(signum, frame):
        print(f"timed out after {args.timeout} s", flush=True)
        os._exit(1)  # the poller runs in a thread; leave without waiting for it

    signal.signal(signal.SIGALRM, on_timeout)
    signal.alarm(args.timeout)

    client = ContainerRegistryManagementClient(
        credential=StaticToken(args.token),
        subscription_id=args.subscription,
        base_url=args.endpoint,
        retry_total=2,  # keep SDK retries of 408/429/5xx from eating the whole timeout
    )
    params = ImportImageParameters(
        source=ImportSource(registry_uri=args.source_registry_uri, source_image=args.source_image),
        target_tags=args.target_tag,
        mode=args.mode,
    )
    try:
        # polling_interval is only used when a response has no Retry-After (ferry sends 1).
        poller = client.registries.begin_import_image(
            args.resource_group, args.registry, params, enforce_https=False, polling_interval=0.2
        )
        poller.result()
    except HttpResponseError as e:
        if args.expect == "failure":
            print(describe(e))
            return 0
        print(f"unexpected {describe(e)}")
        return 1
    if args.expect == "success":
        print("SDK import succeeded")
        return 0
    print("expected a failure but the SDK import succeeded")
    return 1


if __name__ == "__main__":
    sys.exit(main())
