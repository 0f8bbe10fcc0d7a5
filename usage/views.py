"""Usage pages: each person's own (chart, per model, per key, CSV) and the staff overview. Thin."""

from __future__ import annotations

import csv

from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse
from django.shortcuts import render
from django.utils.safestring import mark_safe

from apiaccess.models import ApiKey
from common.staff import staff_required
from usage import charts, reports
from usage.models import UsageRecord


def _charts(report: reports.Report) -> dict[str, str]:
    models = report.models
    tokens = [(m, [report.by_day_model[(d, m)].tokens for d in report.days]) for m in models]
    requests = [(m, [report.by_day_model[(d, m)].requests for d in report.days]) for m in models]
    return {
        "tokens_chart": mark_safe(charts.stacked_bars("Tokens per day, by model", report.days, tokens)),
        "requests_chart": mark_safe(charts.stacked_bars("Requests per day, by model", report.days, requests)),
        "legend": [(m, charts.colour(i)) for i, m in enumerate(models)],
    }


@login_required
def usage_page(request):
    report = reports.report(user=request.user)
    keys = {k.pk: k for k in ApiKey.objects.filter(user=request.user)}
    per_key = sorted(((keys.get(key_id), totals) for key_id, totals in report.by_key.items()),
                     key=lambda pair: -pair[1].tokens)
    rejections = sorted(((UsageRecord.Reason(reason).label, model, count)
                         for (reason, model), count in report.rejections.items()), key=lambda r: -r[2])
    return render(request, "usage/usage.html", {
        "report": report, "per_model": [(m, report.by_model[m]) for m in report.models], "per_key": per_key,
        "rejections": rejections, **_charts(report),
    })


@login_required
def usage_csv(request):
    """One line per day, model, key and outcome over the last 30 days."""
    report_days = reports.window()
    keys = {k.pk: k for k in ApiKey.objects.filter(user=request.user)}
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = 'attachment; filename="gatehouse-usage.csv"'
    writer = csv.writer(response)
    writer.writerow(["day", "model", "key", "outcome", "requests", "prompt_tokens", "completion_tokens",
                     "total_tokens", "gpu_seconds"])
    lines = sorted(reports.rows(report_days, user=request.user),
                   key=lambda r: (r["day"], r["model"], r["key_id"] or 0, r["reason"]))
    for row in lines:
        key = keys.get(row["key_id"])
        prompt, completion = row["prompt"] or 0, row["completion"] or 0
        writer.writerow([row["day"].isoformat(), row["model"], key.name or key.masked if key else "(deleted)",
                         row["reason"], row["requests"], prompt, completion, prompt + completion,
                         f"{row['gpu'] or 0:.3f}"])
    return response


@staff_required
def staff_usage(request):
    report = reports.report()
    people = {u.pk: u for u in get_user_model().objects.filter(pk__in=[k for k in report.by_user if k])}
    top_users = sorted(((people.get(user_id), totals) for user_id, totals in report.by_user.items()),
                       key=lambda pair: -pair[1].tokens)[:20]
    by_reason: dict[str, int] = {}
    for (reason, _model), count in report.rejections.items():
        by_reason[reason] = by_reason.get(reason, 0) + count
    rejections = [(UsageRecord.Reason(reason).label, by_reason.get(reason, 0))
                  for reason in UsageRecord.Reason.values if reason != UsageRecord.Reason.OK]
    return render(request, "usage/staff.html", {
        "report": report, "top_users": top_users, "per_model": [(m, report.by_model[m]) for m in report.models],
        "rejections": rejections,
        "rejections_by_model": sorted(((UsageRecord.Reason(r).label, m, c) for (r, m), c in report.rejections.items()),
                                      key=lambda row: -row[2]),
        **_charts(report),
    })
