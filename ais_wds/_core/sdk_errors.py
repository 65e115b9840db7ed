"""ais_wds's typed errors that are also the aistore SDK's matching exceptions (core use only).

Code written for ``aistore.pytorch`` / the SDK catches ``ErrObjNotFound``, ``ErrBckNotFound``,
``AISError`` (401/403 included) or ``requests.ConnectionError``. The classes here subclass both the ais_wds error (so
``except ais_wds.ObjectNotFoundError`` works) and the SDK's (so that code keeps catching them), and set
the attributes SDK handlers read (``status_code``, ``message``, ``req_url``, ``req``; ``request`` and
``response`` for requests' errors). ``ais_wds.errors`` itself does not import the SDK (``import
ais_wds`` stays fast); :func:`ais_wds._core.retry.translate`, which runs only after a request went
through the SDK, builds its errors from this module.

Pickling: each class is a module-level name, and its ``__init__`` takes the message alone, so an
error pickles and unpickles to the same class with the same attributes.

Thread and process safety: classes only.
"""

from __future__ import annotations

from typing import Any, Optional

import requests
from aistore.sdk.errors import AISError, ErrBckNotFound, ErrObjNotFound, ErrRemoteBckNotFound

from .. import errors


def _sdk_fields(err: Any, status: int, url: Optional[str]) -> None:
    err.status_code = status
    err.req_url = url or ""
    err.req = None


class BucketNotFoundError(errors.BucketNotFoundError, ErrBckNotFound, ErrRemoteBckNotFound):  # type: ignore[misc]  # the SDK is untyped
    """ais_wds's BucketNotFoundError; also the SDK's ErrBckNotFound and ErrRemoteBckNotFound (404)."""

    def __init__(self, message: str, *, url: Optional[str] = None, hint: Optional[str] = None):
        super().__init__(message, url=url, hint=hint)
        _sdk_fields(self, 404, url)


class ObjectNotFoundError(errors.ObjectNotFoundError, ErrObjNotFound):  # type: ignore[misc]  # the SDK is untyped
    """ais_wds's ObjectNotFoundError; also the SDK's ErrObjNotFound (404)."""

    def __init__(self, message: str, *, url: Optional[str] = None, hint: Optional[str] = None):
        super().__init__(message, url=url, hint=hint)
        _sdk_fields(self, 404, url)


class RequestError(errors.RequestError, AISError):  # type: ignore[misc]  # the SDK is untyped
    """ais_wds's RequestError; also the SDK's AISError (``status_code`` 0 when no status came back)."""

    def __init__(self, message: str, *, url: Optional[str] = None, status: Optional[int] = None,
                 hint: Optional[str] = None):
        super().__init__(message, url=url, status=status, hint=hint)
        _sdk_fields(self, status or 0, url)


class ConnectError(errors.ConnectError, requests.exceptions.ConnectionError):
    """ais_wds's ConnectError; also ``requests.ConnectionError`` (what the SDK raises when the gateway
    cannot be reached)."""

    def __init__(self, message: str, *, url: Optional[str] = None, hint: Optional[str] = None):
        super().__init__(message, url=url, hint=hint)
        self.request = None
        self.response = None


class AuthError(errors.AuthError, AISError):  # type: ignore[misc]  # the SDK is untyped
    """ais_wds's AuthError; also the SDK's AISError with the 401/403 ``status_code``."""

    def __init__(self, message: str, *, url: Optional[str] = None, status: Optional[int] = None,
                 token_source: str = "none", hint: Optional[str] = None):
        super().__init__(message, url=url, status=status, token_source=token_source, hint=hint)
        _sdk_fields(self, status or 0, url)
