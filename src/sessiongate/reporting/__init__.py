"""The monthly client report and the vendor's daily digest: content, chart, schedule."""
