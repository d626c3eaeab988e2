# tests/unit: one cmocka binary per unit, TAP on stdout (CMOCKA_MESSAGE_OUTPUT=TAP).

check_PROGRAMS += tests/unit/test_conf
TESTS += tests/unit/test_conf
tests_unit_test_conf_SOURCES = tests/unit/test_conf.c
tests_unit_test_conf_CFLAGS = $(AM_CFLAGS) $(CMOCKA_CFLAGS)
tests_unit_test_conf_LDADD = libinfertap.a $(LLHTTP_LIB) $(TAP_DEP_LIBS) $(CMOCKA_LIBS)
EXTRA_DIST += tests/data/conf
