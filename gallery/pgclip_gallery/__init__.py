"""pgclip's gallery: a small web page over pgclip's SQL API (``make gallery``)."""
