<?php
define('APP_DB', dirname(__DIR__, 2) . '/data/app.sqlite');
define('APP_NAME', 'Notebook');
