from __future__ import annotations

from django.core.management.base import BaseCommand

from inference.catalogue import sync_catalogue


class Command(BaseCommand):
    help = "Poll every Ollama node once and update the Node and Model tables (what the beat task does)."

    def handle(self, *args, **options):
        for report in sync_catalogue():
            if report.healthy:
                self.stdout.write(f"{report.url}: {len(report.models)} model(s): {', '.join(report.models)}")
            else:
                self.stderr.write(f"{report.url}: not answering ({report.error})")
