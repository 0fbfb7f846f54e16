// ncurses with wide characters (Debian's libncurses-dev): the terminal UI's screen handling.
#define _XOPEN_SOURCE 700
#define _XOPEN_SOURCE_EXTENDED 1
#define NCURSES_WIDECHAR 1
#include <locale.h>
#include <wchar.h>
#include <ncursesw/curses.h>

// Macros Swift cannot call.
static inline int parley_color_pair(short pair) { return COLOR_PAIR(pair); }
static inline int parley_lines(void) { return LINES; }
static inline int parley_cols(void) { return COLS; }
static inline int parley_wcwidth(unsigned int scalar) { return wcwidth((wchar_t)scalar); }
static inline WINDOW *parley_stdscr(void) { return stdscr; }
