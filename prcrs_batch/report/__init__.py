"""The alert report and its delivery: rendering, wording, charts, languages, outbox, mail.

Render and send are separate: the HTML is written to disk first; `mailer` is the only
module that speaks SMTP.
"""
