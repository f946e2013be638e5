@echo off
rem A stand-in for python.exe in tests/test_scripts.py (run under Wine's cmd): records its arguments
rem and ENV_FILE in FAKE_LOG; FAKE_PYTHON_EXIT is the exit code of a run (not of a version check).
>>"%FAKE_LOG%" echo python %* ENV_FILE=%ENV_FILE%
if "%~1"=="-c" exit /b 0
if defined FAKE_PYTHON_EXIT exit /b %FAKE_PYTHON_EXIT%
exit /b 0
