"""The portal's Batches page (/batches/): a person's batches with their progress, their files to download,
and a Cancel button. Thin: what the page shows comes from batches/pages.py. Sync portal views."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_POST

from batches import batch_api, files, pages, storage
from batches.models import BatchFile
from common.apierrors import ApiError


@login_required
def batches_page(request):
    rows, total = pages.batch_rows(request.user.pk)
    return render(request, "batches/batches.html", {
        "rows": rows, "total": total, "shown": pages.SHOWN, "any_active": any(row.active for row in rows),
        "example_line": "" if rows else pages.example_line(request.user),
    })


@login_required
def batch_file(request, file_id: str):
    # Only the person's own files: anyone else's id is a 404, exactly like an id that does not exist.
    row = get_object_or_404(BatchFile, public_id=file_id, owner_id=request.user.pk)
    handle = storage.open_object(row.object_name)
    # An async iterator, each chunk read in a worker thread: daphne would read a sync one (a FileResponse)
    # whole into memory before sending it, and a batch file may be 200 MB.
    return StreamingHttpResponse(files.chunks(handle), content_type="application/octet-stream", headers={
        "Content-Length": str(row.bytes),
        "Content-Disposition": content_disposition_header(as_attachment=True, filename=row.filename),
    })


@login_required
@require_POST
def batch_cancel(request, batch_id: str):
    try:
        batch = batch_api.cancel(request.user.pk, batch_id)
    except ApiError as error:
        if error.status == 404:  # not theirs, or no such batch
            raise Http404(error.message) from None
        messages.info(request, error.message)  # it finished since the page was shown
    else:
        messages.success(request, f"Cancelling {batch.public_id}: requests already running finish, the rest do not "
                                  "run. Its output and error files follow once it has stopped.")
    return redirect("batches")
