"""What a monthly report holds (content), its chart and when it is due: below the reporting
jobs, so that the notification sinks that deliver it can use them too."""
