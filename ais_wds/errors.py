"""The ais_wds error hierarchy.

Every error raised by ais_wds on bad input or a failed request is an :class:`AISWdsError`. Each one
names the URL it concerns (``.url``), the cause, and what the user can do about it. None of them
carries an auth token in its message.

    AISWdsError
    ├── URLError            malformed URL or unknown scheme (a ValueError too)
    ├── ConfigError         bad client configuration (a ValueError too)
    ├── EmptyListingError   a prefix matched nothing
    ├── NotFoundError       bucket or object missing (a FileNotFoundError too)
    │   ├── BucketNotFoundError
    │   └── ObjectNotFoundError
    ├── ConnectError        endpoint unreachable (a ConnectionError too)
    ├── AuthError           AIS refused the request's token, or wanted one (a PermissionError too)
    ├── ReadError           a stream failed and retries ran out (an IOError too)
    ├── RequestError        AIS answered with an error status
    ├── WriteError          an upload failed; nothing was left behind
    ├── TarFormatError      a shard is not a valid tar
    ├── PackError           a packing plan that cannot run (key conflicts, existing shards, ...)
    │   └── PackJobError    a cluster-side archive job failed for a shard
    ├── ShardIndexError     not a shard index, or a shard that cannot be indexed
    └── ListingFormatError  a saved listing file that cannot be loaded (a ValueError too)
"""

from __future__ import annotations

from typing import Any, Optional


class AISWdsError(Exception):
    """Base of every ais_wds error.

    Attributes:
        url: the URL the error concerns, if any.
        hint: what the user can do about it, if known.
    """

    default_hint: Optional[str] = None

    def __init__(self, message: str, *, url: Optional[str] = None, hint: Optional[str] = None):
        self.url = url
        self.hint = hint if hint is not None else self.default_hint
        self.message = message
        text = message
        if url and url not in message:
            text = f"{url}: {message}"
        if self.hint:
            text = f"{text} ({self.hint})"
        # BaseException's, not super()'s: some subclasses also derive from the aistore SDK's exceptions,
        # whose __init__ takes other arguments (see ais_wds._core.sdk_errors)
        BaseException.__init__(self, text)

    def __reduce__(self) -> Any:
        # rebuild with the final text and attributes; calling __init__ again would add the URL and hint twice
        return _rebuild, (type(self), self.args, dict(self.__dict__))


def _rebuild(cls: Any, args: Any, state: Any) -> AISWdsError:
    """Unpickle an :class:`AISWdsError` without running ``__init__`` again."""
    err: AISWdsError = cls.__new__(cls, *args)
    err.args = args
    err.__dict__.update(state)
    return err


class URLError(AISWdsError, ValueError):
    """A URL that ais_wds cannot parse: malformed, unknown scheme, or missing bucket."""

    default_hint = "use ais://bucket/path, or s3://, gs://, az://, oc:// for cloud buckets reached through AIS"


class ConfigError(AISWdsError, ValueError):
    """An invalid client setting (endpoint, timeout, pool size, ...)."""


class EmptyListingError(AISWdsError):
    """A prefix (or every prefix of a listing) matched no object."""

    default_hint = "check the bucket and prefix spelling, or list the bucket with `ais-wds ls`"


class NotFoundError(AISWdsError, FileNotFoundError):
    """A bucket or object does not exist."""


class BucketNotFoundError(NotFoundError):
    default_hint = "create the bucket first, or check its name and provider"


class ObjectNotFoundError(NotFoundError):
    default_hint = "the object may have been deleted after listing; list again"


class ConnectError(AISWdsError, ConnectionError):
    """The AIS endpoint cannot be reached."""

    default_hint = ("is the cluster running? set AIS_ENDPOINT or pass endpoint=; "
                    "`scripts/ais-local start` runs one locally")


class ReadError(AISWdsError, IOError):
    """A read failed and could not be resumed within the retry budget.

    Attributes:
        offset: the byte offset in the object where reading stopped.
    """

    def __init__(self, message: str, *, url: Optional[str] = None, offset: Optional[int] = None,
                 hint: Optional[str] = None):
        self.offset = offset
        if offset is not None:
            message = f"{message} at byte offset {offset}"
        super().__init__(message, url=url, hint=hint)


class RequestError(AISWdsError):
    """AIS answered a request with an error status.

    Attributes:
        status: the HTTP status code, if there was one.
    """

    def __init__(self, message: str, *, url: Optional[str] = None, status: Optional[int] = None,
                 hint: Optional[str] = None):
        self.status = status
        super().__init__(message, url=url, hint=hint)


class WriteError(AISWdsError, IOError):
    """An upload failed. The target object was not created or replaced."""


class TarFormatError(AISWdsError):
    """A shard is not a valid tar archive (bad header checksum, truncated member, ...).

    Attributes:
        offset: byte offset in the archive of the header or member at fault.
    """

    default_hint = "the shard is corrupt or not a tar; re-create it or exclude it"

    def __init__(self, message: str, *, url: Optional[str] = None, offset: Optional[int] = None,
                 hint: Optional[str] = None):
        self.offset = offset
        if offset is not None:
            message = f"{message} (archive offset {offset})"
        super().__init__(message, url=url, hint=hint)


class PackError(AISWdsError):
    """A packing plan that cannot be executed: key conflicts, missing extensions under ``abort``,
    a shard name template too small for the plan, or existing shards that would be replaced."""


class ShardIndexError(AISWdsError):
    """A file that is not a shard index, or a shard that cannot be indexed."""


class ListingFormatError(AISWdsError, ValueError):
    """A saved listing file that cannot be loaded: not a listing, or a field missing or of the wrong type.

    Attributes:
        field: the field at fault (None when the file is not a listing at all).
    """

    default_hint = "write it again with `ais-wds ls --save FILE` or Listing.save"

    def __init__(self, message: str, *, url: Optional[str] = None, field: Optional[str] = None,
                 hint: Optional[str] = None):
        self.field = field
        super().__init__(message, url=url, hint=hint)


class PackJobError(PackError):
    """A cluster-side job that builds a shard failed (names the shard and AIS's cause); the shard was
    not made visible."""


class AuthError(AISWdsError, PermissionError):
    """AIS refused a request for want of a valid token (HTTP 401/403): none was sent, or it is wrong or
    expired. Raised at once, never retried. The message names the URL and where the token came from
    (``token=``, ``AIS_AUTHN_TOKEN``, or none), never the token.

    Attributes:
        status: the HTTP status (401 or 403).
        token_source: ``"token="``, ``"AIS_AUTHN_TOKEN"`` or ``"none"``.
    """

    default_hint = ("log in again (e.g. `ais auth login`) and set AIS_AUTHN_TOKEN or pass token= to Client; "
                    "a 403 on a cloud bucket may also be the cluster's own cloud credentials")

    def __init__(self, message: str, *, url: Optional[str] = None, status: Optional[int] = None,
                 token_source: str = "none", hint: Optional[str] = None):
        self.status = status
        self.token_source = token_source
        super().__init__(message, url=url, hint=hint)
