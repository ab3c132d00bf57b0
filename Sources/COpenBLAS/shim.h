#include <cblas.h>
/* OpenBLAS extensions (declared in Debian's cblas.h as well; repeated for clarity). */
char *openblas_get_corename(void);
void openblas_set_num_threads(int num_threads);
