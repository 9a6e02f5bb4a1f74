"""The file-scoring upload: the multipart field ``file``, read in memory, Starlette's limits."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from service.errors import ApiError
from service.uploads import read_file_field

pytestmark = pytest.mark.anyio
LIMIT = 8 * 1024 * 1024


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def _receiver(body: bytes, chunk: int = 65536) -> Any:
    messages = [
        {"type": "http.request", "body": body[i : i + chunk], "more_body": i + chunk < len(body)}
        for i in range(0, max(len(body), 1), chunk)
    ]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    return receive


def _multipart(**parts: Any) -> tuple[bytes, str]:
    files = {k: v for k, v in parts.items() if isinstance(v, tuple)}
    data = {k: v for k, v in parts.items() if not isinstance(v, tuple)}
    request = httpx.Request("POST", "http://x/", files=files, data=data)
    return request.read(), request.headers["content-type"]


async def test_a_large_file_arrives_whole_with_its_name_and_type() -> None:
    content = bytes(range(256)) * 12_000  # 3 MB: over Starlette's 1 MB spool size
    body, content_type = _multipart(note="hello", file=("day.csv", content, "text/csv"))
    upload = await read_file_field(_receiver(body), content_type, LIMIT)
    assert upload.content == content
    assert (upload.filename, upload.content_type) == ("day.csv", "text/csv")


async def test_an_empty_file_is_still_a_file() -> None:
    body, content_type = _multipart(file=("empty.csv", b""))
    upload = await read_file_field(_receiver(body), content_type, LIMIT)
    assert (upload.content, upload.filename) == (b"", "empty.csv")


@pytest.mark.parametrize(
    ("parts", "status", "reason"),
    [
        ({"other": ("a.csv", b"x")}, 422, "missing or not a file"),
        ({"file": "not a file"}, 422, "missing or not a file"),
        (
            {"file": ("a.csv", b"x"), "file2": ("b.csv", b"y")},
            400,
            "Too many files. Maximum number of files is 1.",
        ),
        (
            {f"f{i}": "v" for i in range(11)} | {"file": ("a.csv", b"x")},
            400,
            "Too many fields. Maximum number of fields is 10.",
        ),
    ],
)
async def test_bad_forms(parts: dict[str, Any], status: int, reason: str) -> None:
    body, content_type = _multipart(**parts)
    with pytest.raises(ApiError) as info:
        await read_file_field(_receiver(body), content_type, LIMIT)
    assert (info.value.status, info.value.errors[0]["reason"]) == (status, reason)


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"--x\r\nnot a header line\r\n\r\n", "multipart/form-data; boundary=x", "Invalid"),
        (b"anything", "multipart/form-data", "Missing boundary in multipart."),
        (
            b'--x\r\nContent-Disposition: form-data; filename="a.csv"\r\n\r\nx\r\n--x--\r\n',
            "multipart/form-data; boundary=x",
            'The Content-Disposition header field "name" must be provided.',
        ),
    ],
)
async def test_malformed_bodies_are_400(body: bytes, content_type: str, reason: str) -> None:
    with pytest.raises(ApiError) as info:
        await read_file_field(_receiver(body), content_type, LIMIT)
    assert info.value.status == 400
    assert info.value.code == "malformed_multipart"
    assert info.value.errors[0]["reason"].startswith(reason)


async def test_a_field_over_the_part_limit_is_400() -> None:
    body, content_type = _multipart(note="v" * 2048, file=("a.csv", b"x"))
    with pytest.raises(ApiError) as info:
        await read_file_field(_receiver(body), content_type, 1024)
    assert info.value.errors[0]["reason"] == "Part exceeded maximum size of 1KB."


async def test_a_client_that_goes_away_is_400() -> None:
    body, content_type = _multipart(file=("a.csv", b"x" * 200_000))

    messages = [{"type": "http.request", "body": body[:1000], "more_body": True}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    with pytest.raises(ApiError) as info:
        await read_file_field(receive, content_type, LIMIT)
    assert (info.value.status, info.value.code) == (400, "client_disconnected")
