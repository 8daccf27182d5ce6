from __future__ import annotations

from celery import shared_task

from netting.services import windows_close_due


@shared_task(acks_late=True)
def netting_close_windows_task() -> list[int]:
    """Beat, every minute: close the windows past their time. Safe to run twice (a closed window
    is left alone; the window row lock makes two concurrent runs take turns)."""
    return windows_close_due()
