"""Staff-only JSON for scripts and dashboards: the scheduler's live state (inference/status.py)."""

from __future__ import annotations

from rest_framework.permissions import IsAdminUser
from rest_framework.response import Response
from rest_framework.views import APIView

from inference.status import scheduler_status


class SchedulerStatus(APIView):
    """Per model: queue depth, in flight, where it is loaded and with how much memory; per node:
    health, memory budget and use. GET /portal/api/status"""

    permission_classes = [IsAdminUser]

    def get(self, request):
        return Response(scheduler_status())
