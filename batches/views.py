"""The Files API's routes (/v1/files): thin, the logic is in batches/files.py. Async, on daphne's loop: the
ORM through its async methods, the multipart body, validation and storage in worker threads."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation
from django.http import StreamingHttpResponse
from django.http.multipartparser import MultiPartParserError

from batches import batch_api, files
from common.apierrors import ApiError
from inference.caller import authenticate
from inference.web.api import api_endpoint, json_response, read_body


def _upload_form(request):
    """The multipart form's `purpose` and `file` (sync: Django reads the spooled body)."""
    if not request.content_type.startswith("multipart/form-data"):
        raise ApiError.invalid_request(
            "Upload the file as multipart/form-data with the fields 'file' and 'purpose'.", param="file")
    try:
        return request.POST.get("purpose"), request.FILES.get("file")
    except RequestDataTooBig:  # a form field (not the file) beyond DATA_UPLOAD_MAX_MEMORY_SIZE
        raise ApiError.invalid_request("A form field other than 'file' is too large.", param="purpose") from None
    except (MultiPartParserError, SuspiciousOperation) as error:
        raise ApiError.invalid_request(f"The multipart/form-data body could not be read: {error}",
                                       param="file") from None


@api_endpoint("GET", "POST")
async def files_root(request):
    caller = await authenticate(request)
    if request.method == "POST":
        purpose, upload = await sync_to_async(_upload_form, thread_sensitive=False)(request)
        row = await files.create_file(caller, purpose, upload)
        return json_response(files.file_object(row))
    query = request.GET
    return json_response(await files.list_files(caller, purpose=query.get("purpose"), limit=query.get("limit"),
                                                after=query.get("after"), order=query.get("order")))


@api_endpoint("GET", "DELETE")
async def file_detail(request, file_id: str):
    caller = await authenticate(request)
    if request.method == "DELETE":
        return json_response(await files.delete_file(caller, file_id))
    return json_response(files.file_object(await files.get_file(caller, file_id)))


@api_endpoint("GET")
async def file_content(request, file_id: str):
    caller = await authenticate(request)
    row = await files.get_file(caller, file_id)
    handle = await files.open_content(row)
    return StreamingHttpResponse(files.chunks(handle), content_type="application/octet-stream", headers={
        "Content-Length": str(row.bytes),
        "Content-Disposition": f'attachment; filename="{row.public_id}.jsonl"',
    })


@api_endpoint("GET", "POST")
async def batches_root(request):
    caller = await authenticate(request)
    if request.method == "POST":
        batch = await batch_api.create_batch(caller, read_body(request))
        return json_response(batch_api.batch_object(batch))
    return json_response(await batch_api.list_batches(caller, limit=request.GET.get("limit"),
                                                      after=request.GET.get("after")))


@api_endpoint("GET")
async def batch_detail(request, batch_id: str):
    caller = await authenticate(request)
    return json_response(batch_api.batch_object(await batch_api.get_batch(caller, batch_id)))


@api_endpoint("POST")
async def batch_cancel(request, batch_id: str):
    caller = await authenticate(request)
    return json_response(batch_api.batch_object(await batch_api.cancel_batch(caller, batch_id)))
